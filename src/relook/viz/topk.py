"""Top-k retrieval grids: the query, then its first k results with green (positive) / red (negative)
borders, as in the papers' qualitative figures; precision-recall and metric-against-K curves.

Figures are written at ``DPI`` (200, print quality for an appendix); thumbnails keep their aspect ratio
(letterboxed on white, the coloured border around the picture itself); labels are wrapped by the caller
(``wrap_label``) and the rows are made tall enough for their longest label, so nothing is cut or overlaps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from PIL import Image

from relook.io import atomic_path

#: resolution of every figure relook writes for a report
DPI = 200


def wrap_label(text: str, width: int = 22) -> str:
    """``text`` in lines of at most ``width`` characters, broken after ``/``, ``_``, ``-`` or a space when
    possible and inside a word only when a part is longer than a line; every character kept (no "…")."""
    out = []
    for para in text.split("\n"):
        lines, line = [], ""
        parts = [p for p in _split_keep(para) if p]
        for part in parts:
            while len(part) > width:  # a part longer than a line: hard break
                room = width - len(line)
                lines.append(line + part[:room])
                line, part = "", part[room:]
            if len(line) + len(part) > width:
                lines.append(line.rstrip())
                line = part.lstrip()
            else:
                line += part
        lines.append(line.rstrip())
        out += [x for x in lines if x] or [""]
    return "\n".join(out)


def _split_keep(text: str) -> list[str]:
    """``a/b_c d`` -> ``["a/", "b_", "c ", "d"]``: pieces that end at a break character."""
    pieces, cur = [], ""
    for ch in text:
        cur += ch
        if ch in "/_- ":
            pieces.append(cur)
            cur = ""
    return [*pieces, cur]


def save_png(fig, path: str | Path, dpi: int = DPI, layout: bool = True) -> Path:
    """Write a matplotlib figure as PNG atomically (no half-written file on a crash) and close it.

    ``layout``: apply ``tight_layout`` (off when the caller laid the figure out itself, e.g. a legend row)."""

    if layout:
        fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def _bordered(img: np.ndarray, colour: tuple[int, int, int] | None, size: int, width: int = 6) -> np.ndarray:
    """``img`` scaled to fit ``size`` x ``size`` with its aspect ratio kept, framed by ``width`` px of
    ``colour`` around the picture itself, centred on a white (size + 2 width) square."""

    h, w = img.shape[:2]
    scale = size / max(h, w, 1)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    im = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS))
    out = np.full((size + 2 * width, size + 2 * width, 3), 255, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    if colour is not None:
        out[top : top + nh + 2 * width, left : left + nw + 2 * width] = colour
    out[top + width : top + width + nh, left + width : left + width + nw] = im
    return out


QUERY_RGB, POSITIVE_RGB, NEGATIVE_RGB = (60, 60, 200), (40, 170, 60), (210, 40, 40)


def topk_grid(
    rows: Sequence[tuple[np.ndarray, Sequence[np.ndarray], Sequence[bool]]],
    path: str | Path,
    titles: Sequence[str] = (),
    size: int = 96,
    labels: Sequence[Sequence[str]] | None = None,
    legend: bool = True,
) -> Path:
    """Write a PNG: one row per query: ``(query image, result images, is_positive flags)``.

    ``titles[r]``: text above the query of row r; ``labels[r][c]``: text above result c of row r (e.g.
    rank, gallery id and score; default ``#rank``). ``legend`` adds a key to the border colours (blue
    query, green positive, red negative) under the grid, so the figure reads without its caption.
    """
    return save_png(topk_figure(rows, titles, size, labels, legend), path, layout=False)


def topk_figure(
    rows: Sequence[tuple[np.ndarray, Sequence[np.ndarray], Sequence[bool]]],
    titles: Sequence[str] = (),
    size: int = 96,
    labels: Sequence[Sequence[str]] | None = None,
    legend: bool = True,
):
    """The matplotlib figure ``topk_grid`` writes (laid out; the caller saves or inspects it)."""

    matplotlib.use("Agg")

    k = max((len(r[1]) for r in rows), default=0)
    n = max(len(rows), 1)
    texts = [*titles, *(t for row in (labels or []) for t in row)]
    lines = max((t.count("\n") + 1 for t in texts), default=1)
    row_h = 1.5 + 0.13 * lines  # room for the longest wrapped label above each thumbnail
    fig, axes = plt.subplots(n, k + 1, figsize=(1.45 * (k + 1), row_h * n + (0.35 if legend else 0)), squeeze=False)
    for r, (query, results, flags) in enumerate(rows):
        axes[r, 0].imshow(_bordered(query, QUERY_RGB, size))
        axes[r, 0].set_title(titles[r] if r < len(titles) else "query", fontsize=6)
        for c in range(k):
            ax = axes[r, c + 1]
            if c < len(results):
                ax.imshow(_bordered(results[c], POSITIVE_RGB if flags[c] else NEGATIVE_RGB, size))
                text = labels[r][c] if labels is not None and c < len(labels[r]) else f"#{c + 1}"
                ax.set_title(text, fontsize=6)
        for ax in axes[r]:
            ax.axis("off")
    for ax in axes[len(rows) :].ravel():
        ax.axis("off")
    if legend:
        handles = [
            Patch(facecolor=np.array(c) / 255, label=t)
            for c, t in ((QUERY_RGB, "query"), (POSITIVE_RGB, "positive (same instance)"), (NEGATIVE_RGB, "negative"))
        ]
        fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.35 / (row_h * n + 0.35), 1, 1))
    else:
        fig.tight_layout()
    return fig


def metric_curves(curves: dict[str, dict[str, np.ndarray]], ks: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write a PNG with one panel per metric (``{method: {"R@K": (len(ks),), "mAP@K": ...}}``) against K."""

    matplotlib.use("Agg")

    names = list(dict.fromkeys(m for c in curves.values() for m in c))
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], names):
        for method, c in curves.items():
            if metric in c:
                ax.plot(ks, 100 * np.asarray(c[metric]), label=method, lw=1.4)
        ax.set_xscale("log")
        ax.set_xlabel("K (log scale)")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"{metric} against K", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Write a PNG with one precision-recall curve per method (``{method: (recall, precision)}``)."""

    matplotlib.use("Agg")

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
    return save_png(fig, path)
