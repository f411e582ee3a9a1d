"""What the model learned (Sec. 5.6, Fig. 4 of the epipolar paper): cross-attention vs epipolar grids.

An (s^2, s^2) map between two s x s grids is drawn as an s x s grid of s x s patches: the patch at grid
position (r, c) is the map's row ``i = r s + c`` (cell (r, c) of image 1) reshaped to s x s over image 2.
``plot_epipolar_attention`` writes a PNG: the two images with a few points and their epipolar lines, the
ground-truth epipolar grid and the predicted cross-attention grid, side by side;
``epipolar_attention_figure`` makes it for two images of a store and an RRT checkpoint
(``relook visualize epipolar-attention``, ``relook demo``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from relook.datasets.base import load_dataset
from relook.errors import DataError, ShapeError
from relook.geometry.epipolar import grid_centers
from relook.images import load_image
from relook.losses.epipolar import epipolar_attention_share
from relook.models.epipolar_guidance import EpipolarGuidance
from relook.models.rrt.checkpoint import load_rrt
from relook.models.rrt.inputs import model_kwargs, pack_side, required_fields
from relook.store import FeatureStore
from relook.viz.topk import DPI  # every report figure at the same print resolution


def grid_of_patches(M: np.ndarray, s: int, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """(s^2, s^2) map -> (s (s + gap) - gap)^2 image of s x s patches separated by ``gap`` pixels of ``fill``."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (s * s, s * s):
        raise ShapeError(f"grid_of_patches: expected ({s * s}, {s * s}), got {M.shape}")
    step = s + gap
    out = np.full((s * step - gap, s * step - gap), fill)
    for i in range(s * s):
        r, c = divmod(i, s)
        out[r * step : r * step + s, c * step : c * step + s] = M[i].reshape(s, s)
    return out


def plot_epipolar_attention(
    img1: np.ndarray,
    img2: np.ndarray,
    F: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    out_path: str | Path,
    s: int = 7,
    title: str = "",
    pred_label: str = "predicted",
    points: int = 3,
) -> Path:
    """Write the Fig. 4-style PNG. img* RGB (H, W, 3) in the frame of F (x2^T F x1 = 0); gt, pred (s^2, s^2)
    image-1 -> image-2 maps (indicator, attention). Returns ``out_path``."""

    matplotlib.use("Agg")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(1, 4, figsize=(16, 4.4))
    ax[0].imshow(img1)
    ax[1].imshow(img2)
    H2, W2 = img2.shape[:2]
    ctr = grid_centers(img1.shape[:2], s).numpy()
    colors = plt.cm.tab10(np.arange(points))
    for k, i in enumerate(np.linspace(s, s * s - s - 1, points).astype(int)):
        x, y = ctr[i]
        ax[0].plot(x, y, "o", color=colors[k], ms=8, mec="k")
        a, b, c = F @ np.array([x, y, 1.0])
        xs = np.array([-0.5, W2 - 0.5])
        if abs(b) > 1e-12:
            ax[1].plot(xs, -(a * xs + c) / b, "-", color=colors[k], lw=2)
        elif abs(a) > 1e-12:
            ax[1].plot([-c / a, -c / a], [-0.5, H2 - 0.5], "-", color=colors[k], lw=2)
    ax[1].set_xlim(-0.5, W2 - 0.5)
    ax[1].set_ylim(H2 - 0.5, -0.5)
    ax[0].set_title("image 1: cell centres")
    ax[1].set_title("image 2: their epipolar lines")
    ax[2].imshow(grid_of_patches(gt, s), cmap="viridis", interpolation="nearest")
    ax[2].set_title("ground-truth epipolar grid 1 -> 2")
    ax[3].imshow(grid_of_patches(pred, s), cmap="viridis", interpolation="nearest")
    ax[3].set_title(pred_label)
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)
    return out_path


def cross_attention_maps(model, q_side: dict, c_side: dict, input_pe=None):
    """Last-layer softmax attention between the two images' local tokens, head-averaged, each row
    renormalised over the other image's tokens: ``a12`` (B, n1, n2) and ``a21`` (B, n2, n1).

    ``q_side`` / ``c_side``: RRT input sides (``relook.models.rrt.inputs.pack_side``); ``model``: an RRT.
    """

    with torch.inference_mode():
        out = model(**model_kwargs(q_side, c_side), input_pe=input_pe, return_attention=True)
    att = out.attentions[-1].float().mean(1)
    n1, n2 = out.n_query, out.n_candidate
    s1, s2 = model.offsets(n1)
    a12, a21 = att[:, s1 : s1 + n1, s2 : s2 + n2], att[:, s2 : s2 + n2, s1 : s1 + n1]
    return a12 / a12.sum(-1, keepdim=True).clamp_min(1e-12), a21 / a21.sum(-1, keepdim=True).clamp_min(1e-12)


def epipolar_attention_figure(
    checkpoint: str | Path,
    store: str | Path,
    query_id: str,
    candidate_id: str,
    root: str | Path,
    out: str | Path,
    dataset: str = "co3d_retrieve",
    split: str = "test",
    variant: str = "full",
    net_size: int = 224,
) -> tuple[Path, str]:
    """The PNG of ``relook visualize epipolar-attention``: the RRT's (``checkpoint``) predicted last-layer
    cross-attention between two images of ``store`` (an s x s grid of locals each) next to the ground-truth
    epipolar grid from the cameras of ``dataset`` at ``root`` (``split``, ``variant``), at ``net_size``.
    Returns ``out`` and a one-line summary: the share of attention on epipolar cells, and that of uniform
    attention. The cameras are used for the ground truth only."""

    ds = load_dataset(dataset, root, split=split, variant=variant)
    paths = {i: (p, b) for i, p, b in ds.gallery}
    for i in (query_id, candidate_id):
        if i not in paths or i not in ds.info.get("cameras", {}):
            raise DataError(f"image {i!r} is not in {dataset} {split}/{variant} with cameras")
    model = load_rrt(checkpoint).eval()
    with FeatureStore(store, "r") as st:
        q, c = (st.read(i, required_fields(model.conf)) for i in (query_id, candidate_id))
    imgs = [load_image(*paths[i]) for i in (query_id, candidate_id)]
    g = EpipolarGuidance(
        cameras=ds.info["cameras"],
        image_sizes={i: im.shape[:2] for i, im in zip((query_id, candidate_id), imgs)},
        net_size=(net_size, net_size),
    )
    s = int(round(q.num_local**0.5))
    if s * s != q.num_local:
        raise DataError(f"{store}: {query_id} has {q.num_local} locals, not an s x s grid")
    g.conf["grid"] = s
    F, _ = g.fundamentals([query_id], [candidate_id])
    I12, I21 = g.indicators(F)
    a12, a21 = cross_attention_maps(model, pack_side([q], model.conf), pack_side([c], model.conf))
    share = 0.5 * (epipolar_attention_share(a12, I12.float()) + epipolar_attention_share(a21, I21.float()))
    small = [cv2.resize(im, (net_size, net_size), interpolation=cv2.INTER_AREA) for im in imgs]
    plot_epipolar_attention(
        small[0],
        small[1],
        F[0].numpy(),
        I12[0].numpy(),
        a12[0].numpy(),
        out,
        s=s,
        title=f"{query_id} -> {candidate_id}: {100 * float(share[0]):.1f}% of attention on "
        f"epipolar cells (uniform: {100 * float(I12.mean()):.1f}%)",
        pred_label="predicted last-layer cross-attention 1 -> 2",
    )
    return Path(out), (
        f"epipolar attention share {100 * float(share[0]):.2f}% "
        f"(uniform attention {100 * float(0.5 * (I12.mean() + I21.mean())):.2f}%)"
    )
