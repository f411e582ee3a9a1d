"""The HTML report of an experiment: results table, provenance, precision-recall curves, top-k grids,
and every PNG under ``<out>/figures/`` (correspondences, attention grids, heatmaps made by other stages).

Images are referenced by relative path, so the folder can be copied or served as it is.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from relook.io import atomic_path
from relook.types import Ranking, Shortlist


def _table_html(results: dict) -> str:
    metrics = list(dict.fromkeys(k for r in results["metrics"].values() for k in r))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ["method", *metrics, "s/query"])
    best = {m: max((r.get(m, float("nan")) for r in results["metrics"].values()), default=0) for m in metrics}
    rows = []
    for name, vals in results["metrics"].items():
        cells = []
        for m in metrics:
            v = vals.get(m, float("nan"))
            txt = f"{100 * v:.2f}"
            cells.append(f"<td><b>{txt}</b></td>" if np.isfinite(v) and v == best[m] else f"<td>{txt}</td>")
        t = results["seconds_per_query"].get(name)
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}<td>{'' if t is None else f'{t:.3f}'}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def make_figures(conf: dict, num_queries: int = 4, k: int = 6) -> list[Path]:
    """PR curves of every method and top-k grids of the first queries -> ``<out>/figures/``."""
    from relook.eval.evaluate import align
    from relook.eval.metrics import precision_recall_curve
    from relook.images import load_image
    from relook.pipeline import dataset_of
    from relook.viz.topk import pr_curves, topk_grid

    dataset = dataset_of(conf)
    out = Path(conf["out"])
    figs = out / "figures"
    methods = {"global only": out / "shortlist.npz"}
    methods.update({r["label"]: out / "rankings" / f"{r['label']}.npz" for r in conf["rerankers"]})
    methods = {m: Ranking.load(p) if m != "global only" else Shortlist.load(p) for m, p in methods.items() if p.exists()}
    setting = "medium" if dataset.protocol == "revisitop" else None
    positives, ignore = dataset.ground_truth(setting)
    curves = {m: precision_recall_curve(align(r, dataset), positives, ignore) for m, r in methods.items()}
    made = [pr_curves(curves, figs / "pr_curves.png", f"{dataset.name}: precision-recall")]
    gallery = {g[0]: g for g in dataset.gallery}
    for name, ranking in methods.items():
        idx = align(ranking, dataset)
        rows, titles = [], []
        for q in range(min(num_queries, len(dataset.queries))):
            qid, qpath, qbox = dataset.queries[q]
            ign = set(np.asarray(ignore[q]).tolist())
            ranked = [g for g in idx[q] if g >= 0 and g not in ign][:k]
            pos = set(np.asarray(positives[q]).tolist())
            results = [load_image(gallery[dataset.gallery_ids[g]][1], gallery[dataset.gallery_ids[g]][2]) for g in ranked]
            rows.append((load_image(qpath, qbox), results, [g in pos for g in ranked]))
            titles.append(qid[-18:])
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        made.append(topk_grid(rows, figs / f"topk_{safe}.png", titles))
    return made


def write_report(conf: dict, results: dict, title: str = "relook report") -> Path:
    """Write ``<out>/report.html`` from ``results`` (``pipeline.evaluate``) and the figures folder."""
    out = Path(conf["out"])
    figs = sorted((out / "figures").glob("*.png")) if (out / "figures").exists() else []
    note = results.get("data_note", "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             ".note{background:#fff3cd;padding:.6em;border:1px solid #e0c060}figure{display:inline-block;margin:.5em}"
             "figcaption{font-size:80%;color:#444}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p><b>Data:</b> {html.escape(results['dataset'])}</p>"]
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<h2>Results (%, higher is better; time per query in seconds)</h2>" + _table_html(results))
    from relook.eval.commentary import commentary

    lines = commentary(results)  # one line per method against the global order, so a loss is never silent
    if lines:
        parts.append("<p><b>Compared with the global order (mAP):</b></p><ul>"
                     + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")
    parts.append(f"<p><b>git commit:</b> {html.escape(results['git'])}</p><ul>")
    parts += [f"<li><b>{html.escape(m)}</b>: {html.escape(p)}</li>" for m, p in results["provenance"].items() if p]
    parts.append("</ul><h2>Figures</h2>")
    for f in figs:
        rel = f.relative_to(out)
        parts.append(f"<figure><img src='{html.escape(str(rel))}' style='max-width:100%'>"
                     f"<figcaption>{html.escape(f.stem.replace('_', ' '))}</figcaption></figure>")
    parts.append("</body></html>")
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
