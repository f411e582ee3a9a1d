"""The page ``relook query`` writes: per query image, its thumbnail and the top-k gallery thumbnails with
rank, scores, rank change and whether each passes the method's calibrated threshold, with the verdict
("confident match" / "no confident match") above them; then the run's provenance (the report's "what
ran" block: data, split, weights, rerankers' settings, thresholds) and where and when the query ran.
Thumbnails are embedded as base64 JPEG, so the one HTML file can be mailed or moved without the images
beside it. Captions wrap inside their card (long gallery ids break anywhere), never past it."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from relook.confidence import read_calibration
from relook.environment import environment
from relook.errors import DataError
from relook.images import load_image
from relook.io import atomic_path
from relook.query import verdict
from relook.viz.provenance import environment_html, run_html


def thumbnail_uri(image: np.ndarray, size: int = 192, quality: int = 85) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the RGB uint8 ``image`` (H, W, 3) shrunk to ``size`` px long side."""

    im = Image.fromarray(image)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _card(uri: str, lines: Sequence[str], css: str = "") -> str:
    text = "<br>".join(html.escape(t) for t in lines if t)
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
        "body{font-family:sans-serif;margin:1.5em;max-width:1400px} section{margin-bottom:2em}",
        "figure{display:inline-block;margin:4px;vertical-align:top;font-size:12px;width:"
        f"{size + 8}px}} figure img{{max-width:{size}px;max-height:{size}px;border:4px solid #ddd}}",
        "figcaption{overflow-wrap:anywhere} figure.query img{border-color:#3c3cc8}",
        "figure.yes img{border-color:#28aa3c} .verdict{padding:.4em;border:1px solid #bbb;max-width:1100px}",
        ".verdict.no{background:#fde2e1} .verdict.yes{background:#e3f6e5} .prov{overflow-wrap:anywhere}",
        ".warn{background:#fde2e1;padding:.5em;border:1px solid #d9534f;max-width:1100px}",
        "</style></head><body>",
        f"<h1>relook query</h1><p>run: {html.escape(str(run_dir))}</p>",
    ]
    for res in results:
        parts.append(f"<section><h2>{html.escape(str(res.image))} &mdash; {html.escape(res.method)}</h2>")
        parts.append(f"<p class='verdict {'yes' if res.confident else 'no'}'>{html.escape(verdict(res))}</p>")
        parts.append(_card(uri(res.image), ["query", res.image.name], "query"))
        for h in res.hits:
            glob = "global: -" if h.global_rank is None else f"global: {h.global_score:.4f} (#{h.global_rank})"
            sure = "" if h.confident is None else ("match: yes" if h.confident else "match: no")
            parts.append(
                _card(
                    uri(h.path, h.bbox),
                    [f"#{h.rank} {h.gallery_id}", f"{res.method}: {h.score:.4f}", glob, _change(h), sure],
                    "yes" if h.confident else "",
                )
            )
        parts.append("</section>")
    parts.append("<section id='provenance'><h2>What the run is</h2>")
    saved = Path(run_dir) / "results.json"
    try:
        parts.append(run_html(json.loads(saved.read_text()), read_calibration(run_dir)))
    except (OSError, ValueError, KeyError):
        parts.append(f"<p>{html.escape(str(saved))} is missing or unreadable: run `relook evaluate` on the run.</p>")
    parts.append(environment_html(environment(), "This query ran with") + "</section>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf8")
    return path
