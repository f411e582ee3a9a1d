"""Top-k retrieval grids: the query, then its first k results with green (positive) / red (negative)
borders, as in the papers' qualitative figures."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from relook.io import atomic_path


def save_png(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (no half-written file on a crash) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _bordered(img: np.ndarray, colour: tuple[int, int, int] | None, size: int, width: int = 6) -> np.ndarray:
    from PIL import Image

    im = np.asarray(Image.fromarray(img).resize((size, size)))
    out = np.full((size + 2 * width, size + 2 * width, 3), 255, np.uint8)
    if colour is not None:
        out[:] = colour
    out[width:-width, width:-width] = im
    return out


def topk_grid(rows: Sequence[tuple[np.ndarray, Sequence[np.ndarray], Sequence[bool]]], path: str | Path,
              titles: Sequence[str] = (), size: int = 96) -> Path:
    """Write a PNG: one row per query: ``(query image, result images, is_positive flags)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max((len(r[1]) for r in rows), default=0)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.3 * (k + 1), 1.4 * len(rows)), squeeze=False)
    for r, (query, results, flags) in enumerate(rows):
        axes[r, 0].imshow(_bordered(query, (60, 60, 200), size))
        axes[r, 0].set_title(titles[r] if r < len(titles) else "query", fontsize=7)
        for c in range(k):
            ax = axes[r, c + 1]
            if c < len(results):
                ax.imshow(_bordered(results[c], (40, 170, 60) if flags[c] else (210, 40, 40), size))
                ax.set_title(f"#{c + 1}", fontsize=7)
        for ax in axes[r]:
            ax.axis("off")
    return save_png(fig, path, dpi=90)


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Write a PNG with one precision-recall curve per method (``{method: (recall, precision)}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for name, (rec, prec) in curves.items():
        ax.plot(rec, prec, marker="o", ms=3, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("interpolated precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    return save_png(fig, path, dpi=100)
