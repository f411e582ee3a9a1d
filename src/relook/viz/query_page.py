"""The page ``relook query`` writes: per query image, its thumbnail and the top-k gallery thumbnails with
rank, scores and rank change. Thumbnails are embedded as base64 JPEG, so the one HTML file can be mailed
or moved without the images beside it."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relook.errors import DataError
from relook.images import load_image
from relook.io import atomic_path


def thumbnail_uri(image: np.ndarray, size: int = 192, quality: int = 85) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the RGB uint8 ``image`` (H, W, 3) shrunk to ``size`` px long side."""
    from PIL import Image

    im = Image.fromarray(image)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _card(uri: str, lines: Sequence[str], css: str = "") -> str:
    text = "<br>".join(html.escape(t) for t in lines)
    return f"<figure class='{css}'><img src='{uri}'><figcaption>{text}</figcaption></figure>"


def _change(hit) -> str:
    if hit.rank_change is None:
        return "new (not in the global top-k)"
    return "unchanged" if hit.rank_change == 0 else f"{hit.rank_change:+d} vs global"


def write_query_page(results, path: str | Path, run_dir: str | Path, size: int = 192) -> Path:
    """Write the HTML page of ``results`` (``relook.query.QueryResult`` list) to ``path``; returns it.

    Gallery thumbnails are read from the files the run's dataset names (cropped to their boxes); one that
    can no longer be read shows as a grey square, so a moved gallery does not stop the page.
    """

    def uri(file: Path, bbox=None) -> str:
        try:
            return thumbnail_uri(load_image(file, bbox), size)
        except DataError:
            return thumbnail_uri(np.full((size, size, 3), 200, np.uint8), size)

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>relook query</title><style>",
        "body{font-family:sans-serif;margin:1.5em} section{margin-bottom:2em}",
        "figure{display:inline-block;margin:4px;vertical-align:top;font-size:12px;width:"
        f"{size + 8}px}} figure img{{max-width:{size}px;max-height:{size}px;border:4px solid #ddd}}",
        "figure.query img{border-color:#3c3cc8}</style></head><body>",
        f"<h1>relook query</h1><p>run: {html.escape(str(run_dir))}</p>",
    ]
    for res in results:
        parts.append(f"<section><h2>{html.escape(str(res.image))} &mdash; {html.escape(res.method)}</h2>")
        parts.append(_card(uri(res.image), ["query", res.image.name], "query"))
        for h in res.hits:
            glob = "global: -" if h.global_rank is None else f"global: {h.global_score:.4f} (#{h.global_rank})"
            parts.append(
                _card(
                    uri(h.path, h.bbox), [f"#{h.rank} {h.gallery_id}", f"{res.method}: {h.score:.4f}", glob, _change(h)]
                )
            )
        parts.append("</section>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf8")
    return path
