"""Draw keypoint correspondences between two images side by side (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from relook.errors import ShapeError
from relook.viz.topk import DPI  # every report figure at the same print resolution


def draw_matches(
    image1: np.ndarray,
    image2: np.ndarray,
    kp1: np.ndarray,
    kp2: np.ndarray,
    out_path: str | Path,
    scores: np.ndarray | None = None,
    title: str = "",
    max_lines: int | None = None,
) -> Path:
    """Write a PNG with ``image1`` left, ``image2`` right and a line per match ``kp1[i] <-> kp2[i]``.

    kp1, kp2: (M, 2) (x, y) pixels of each image; scores (M,) colour the lines (viridis, brightest =
    highest) and, with ``max_lines``, keep only the strongest matches.
    """

    matplotlib.use("Agg")

    kp1, kp2 = np.asarray(kp1, np.float64).reshape(-1, 2), np.asarray(kp2, np.float64).reshape(-1, 2)
    if len(kp1) != len(kp2):
        raise ShapeError(f"draw_matches: {len(kp1)} query keypoints but {len(kp2)} candidate keypoints")
    scores = np.ones(len(kp1)) if scores is None else np.asarray(scores, np.float64).ravel()
    if len(scores) != len(kp1):
        raise ShapeError(f"draw_matches: {len(scores)} scores for {len(kp1)} matches")
    order = np.argsort(-scores, kind="stable")[:max_lines]
    h1, w1 = image1.shape[:2]
    h2, w2 = image2.shape[:2]
    canvas = np.full((max(h1, h2), w1 + w2, 3), 255, np.uint8)
    canvas[:h1, :w1], canvas[:h2, w1:] = image1[..., :3], image2[..., :3]
    fig, ax = plt.subplots(figsize=(8 * (w1 + w2) / max(h1, h2) / 2 + 1, 4.5), dpi=110)
    ax.imshow(canvas)
    lo, hi = (scores.min(), scores.max()) if len(scores) else (0.0, 1.0)
    cmap = plt.get_cmap("viridis")
    for i in order[::-1]:  # strongest drawn last (on top)
        col = cmap(0.0 if hi <= lo else (scores[i] - lo) / (hi - lo))
        ax.plot([kp1[i, 0], kp2[i, 0] + w1], [kp1[i, 1], kp2[i, 1]], "-", color=col, lw=1.0, alpha=0.85)
        ax.plot([kp1[i, 0], kp2[i, 0] + w1], [kp1[i, 1], kp2[i, 1]], "o", color=col, ms=3)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out_path
