"""From stored ``ImageFeatures`` to RRT input tensors (one side of a pair), shared by rerank/train/viz.

A side is a dict of tensors for B images: ``local`` (B, n, d), ``pos`` (B, n, 2) normalised (x/W, y/H),
``mask`` (B, n) bool (True = padding), ``scale_idx`` (B, n) long, ``global`` (B, D) or None, and
``keypoints`` (B, n, 2) pixels and ``image_size`` (B, 2) = (H, W) (for correspondences / epipolar
losses). ``n`` is the largest local count
in the batch after selection.

Selection (``select_locals``): ``input="keypoints"`` keeps the ``max_locals`` strongest locals by the
stored ``attention`` (DELG top-500, as the official code takes DELG's attention-sorted list);
``input="grid"`` keeps the stored order (row-major cells) and truncates to ``max_locals``.
Positions: ``input="grid"`` with a full s x s grid (s^2 locals in row-major order) takes the official SOP
grid positions ((j + 1)/s, (i + 1)/s) of ``grid_positions`` (DETR's normalised cumulative index, which
the official weights were trained with); keypoints divided by the image size would give the cell centres
((j + 0.5)/s, ...), half a cell off. Other inputs (keypoints, or a grid that is not square) use keypoints
divided by the image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from relook.errors import DataError
from relook.models.position_encoding import grid_positions
from relook.models.rrt.model import DELG_SCALES, scale_indices
from relook.types import ImageFeatures


def required_fields(model_conf: dict) -> list[str]:
    """Store fields an RRT with this config reads (attention is optional: used when present)."""
    fields = ["local_desc", "keypoints"]
    if model_conf["position_encoding"] != "none":
        fields.append("image_size")
    if model_conf["d_global"]:
        fields.append("global_desc")
    if model_conf["scale_embedding"]:
        fields.append("scales")
    return fields


def select_locals(f: ImageFeatures, input_kind: str, max_locals: int | None) -> np.ndarray:
    """Indices of the locals of ``f`` fed to RRT (see module docstring)."""
    n = f.num_local
    if input_kind == "keypoints" and f.attention is not None and len(f.attention) == n:
        order = np.argsort(-f.attention, kind="stable")
    else:
        order = np.arange(n)
    return order[:max_locals] if max_locals else order


def pack_side(
    feats: Sequence[ImageFeatures], model_conf: dict, max_locals: int | None = None, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor | None]:
    """Pad and stack the selected locals of ``feats`` into one side of a pair batch."""
    max_locals = max_locals or model_conf.get("max_locals")
    sel = [select_locals(f, model_conf["input"], max_locals) for f in feats]
    B, n = len(feats), max([len(s) for s in sel], default=0)
    d = next((f.local_desc.shape[1] for f in feats if f.local_desc is not None), model_conf["d_local"])
    local = np.zeros((B, n, d), np.float32)
    pos = np.zeros((B, n, 2), np.float32)
    kps = np.zeros((B, n, 2), np.float32)
    scales = np.ones((B, n), np.float32)
    mask = np.ones((B, n), bool)
    sizes = np.zeros((B, 2), np.int64)
    glob = np.zeros((B, model_conf["d_global"] or 0), np.float32)
    for b, (f, s) in enumerate(zip(feats, sel)):
        k = len(s)
        mask[b, :k] = False
        if k:
            local[b, :k] = f.get("local_desc")[s]
            kps[b, :k] = f.get("keypoints")[s]
            if f.image_size is not None:
                sizes[b] = f.image_size
                pos[b, :k] = kps[b, :k] / np.asarray(f.image_size[::-1], np.float32).clip(min=1)
            side = int(round(k**0.5))
            if model_conf["input"] == "grid" and side * side == k == f.num_local:
                pos[b, :k] = grid_positions(side, side).numpy()
            if f.scales is not None:
                scales[b, :k] = f.scales[s]
        if model_conf["d_global"]:
            g = f.get("global_desc")
            if g.shape[0] != glob.shape[1]:
                raise DataError(
                    f"image {f.image_id!r}: global_desc has {g.shape[0]} dims, the RRT model expects {glob.shape[1]}"
                )
            glob[b] = g
    if n and local.shape[2] != model_conf["d_local"]:
        raise DataError(
            f"local_desc has {local.shape[2]} dims but the RRT model expects d_local="
            f"{model_conf['d_local']}; extract with a matching local_dim"
        )
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {
        "local": t(local),
        "pos": t(pos),
        "mask": t(mask),
        "keypoints": t(kps),
        "image_size": t(sizes),
        "scale_idx": scale_indices(torch.from_numpy(scales), DELG_SCALES).to(device),
        "global": t(glob) if model_conf["d_global"] else None,
    }


def index_side(side: dict, idx: torch.Tensor) -> dict:
    """Rows ``idx`` of every tensor of a side (e.g. repeat a query for its K candidates)."""
    return {k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in side.items()}


def model_kwargs(q: dict, c: dict) -> dict:
    """Keyword arguments of ``RRT.forward`` for query side ``q`` and candidate side ``c``.

    Masks are passed only when something is padded, so full grids keep the fused attention path.
    """
    kw = {
        "q_local": q["local"],
        "c_local": c["local"],
        "q_pos": q["pos"],
        "c_pos": c["pos"],
        "q_scale_idx": q["scale_idx"],
        "c_scale_idx": c["scale_idx"],
        "q_global": q["global"],
        "c_global": c["global"],
    }
    if bool(q["mask"].any()) or bool(c["mask"].any()):
        kw["q_mask"], kw["c_mask"] = q["mask"], c["mask"]
    return kw
