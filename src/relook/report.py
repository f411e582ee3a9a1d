"""The HTML report of an experiment, as a reader of an appendix wants it: what ran on what (data, sizes,
shortlist and reranked lengths, weights records, seeds, commit, caveats), the results table with one
generated line per method, time per stage and per query, R@K and mAP@K against K, top-k examples, the
queries each reranker helped and hurt most, and the other stages' figures, each with a caption.

``make_figures`` draws the figures and writes ``figures/captions.json`` (file -> section and caption);
``write_report`` lays them out, captioning figures made elsewhere (RRT correspondences, attention grids,
OT heatmaps) by their file-name pattern. Images are referenced by relative path, so the folder can be
copied or served as it is.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from relook.confidence import read_calibration
from relook.eval.cases import helped_and_hurt
from relook.eval.commentary import commentary
from relook.eval.comparison import commentary as compared
from relook.eval.evaluate import align
from relook.eval.metrics import first_positive_ranks, map_at_k_curve, precision_recall_curve, recall_at_k
from relook.images import load_image
from relook.io import atomic_path
from relook.pipeline import dataset_of, store_paths
from relook.types import Ranking, Shortlist
from relook.viz.provenance import run_html
from relook.viz.rerankers import ot_pair_figure, rrt_pair_figure
from relook.viz.topk import metric_curves, pr_curves, topk_grid, wrap_label

#: report sections in page order: (id, heading)
SECTIONS = (
    ("run", "What ran"),
    ("results", "Results"),
    ("timing", "Time"),
    ("curves", "Metrics against K"),
    ("examples", "Top-k examples"),
    ("cases", "Helped and hurt"),
    ("internals", "Inside the rerankers"),
    ("other", "Other figures"),
)
#: figures made by other stages (``relook visualize ...``, the demo): file-name prefix -> (section, caption)
EXTERNAL_CAPTIONS = {
    "rrt_matches_": (
        "internals",
        "{label}: RRT correspondences between a query and a true match, drawn only for "
        "its strongest matches (last-layer attention plus assignment). Brighter lines are "
        "stronger; lines that join the same object part in both views mean the model "
        "attends to real correspondences.",
    ),
    "epipolar_attention_": (
        "internals",
        "{label}: cross-attention against the epipolar geometry for one true "
        "match. Left: cell centres and their epipolar lines; right: the "
        "ground-truth epipolar grid and the model's attention grid (one small "
        "patch per image-1 cell). The title gives the share of attention on "
        "epipolar cells; the closer the two grids look, the more the model "
        "follows the geometry.",
    ),
    "ot_": (
        "internals",
        "{label}: optimal-transport reranking of one query and a true match. Heatmaps: each "
        "patch's importance (OT marginal); boxes of one colour: the patch pairs carrying the most "
        "transport mass. The title names the backbone and its weights.",
    ),
}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _group(dataset, gallery_index: int) -> str | None:
    """The group (instance) name of a gallery item: the folder reader's name, else its label."""
    gid = dataset.gallery_ids[gallery_index]
    group_of = dataset.info.get("group_of") or {}
    if gid in group_of:
        return None if group_of[gid] is None else str(group_of[gid])
    labels = dataset.gallery_labels
    return None if labels is None else str(labels[gallery_index])


def _label(rank: int, dataset, g: int, method: str, score: float) -> str:
    """Rank, full gallery id (wrapped, never cut), its group when the id does not show it, and the score."""

    gid = dataset.gallery_ids[g]
    group = _group(dataset, g)
    text = wrap_label(f"#{rank} {gid}")
    if group is not None and group not in gid.split("/"):
        text += "\n" + wrap_label(f"group {group}")
    return f"{text}\n{method}: {score:.3f}"


def _aligned(ranking: Shortlist, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), rows in the dataset's query order, indices in its gallery order (-1 padding)."""
    qpos = {q: i for i, q in enumerate(ranking.query_ids)}
    return align(ranking, dataset), ranking.scores[[qpos[q] for q in dataset.query_ids]]


def _row(dataset, idx: np.ndarray, scores: np.ndarray, q: int, positives, ignore, k: int, method: str):
    """One grid row: (query image, result images, positive flags) and the labels above the results."""
    ign = set(np.asarray(ignore[q]).tolist())
    keep = [c for c, g in enumerate(idx[q]) if g >= 0 and g not in ign][:k]
    pos = set(np.asarray(positives[q]).tolist())
    gallery = dataset.gallery
    images = [load_image(gallery[idx[q, c]][1], gallery[idx[q, c]][2]) for c in keep]
    labels = [_label(r + 1, dataset, idx[q, c], method, scores[q, c]) for r, c in enumerate(keep)]
    qid, qpath, qbox = dataset.queries[q]
    return (load_image(qpath, qbox), images, [idx[q, c] in pos for c in keep]), labels


def _rank(r: float) -> str:
    return "lost" if not np.isfinite(r) else f"#{int(r)}"


def make_figures(conf: dict, num_queries: int = 4, k: int = 6, cases: int = 2) -> list[Path]:
    """Draw the report's own figures into ``<out>/figures/`` and caption them in ``captions.json``.

    PR curves and R@K / mAP@K for K = 1..100 of every method; top-k grids of the first ``num_queries``
    queries per method; per reranker, the ``cases`` queries it helped and hurt most (first positive's
    rank before -> after), each as a global row over a reranked row. Grids show gallery ids and scores.
    """
    dataset = dataset_of(conf)
    out = Path(conf["out"])
    figs = out / "figures"
    paths = {"global only": out / "shortlist.npz"}
    paths.update({r["label"]: out / "rankings" / f"{r['label']}.npz" for r in conf["rerankers"]})
    methods = {
        m: (Shortlist.load(p) if m == "global only" else Ranking.load(p)) for m, p in paths.items() if p.exists()
    }
    setting = "medium" if dataset.protocol == "revisitop" else None
    positives, ignore = dataset.ground_truth(setting)
    aligned = {m: _aligned(r, dataset) for m, r in methods.items()}
    captions: dict[str, dict[str, str]] = {}

    def add(path: Path, section: str, caption: str) -> None:
        made.append(path)
        captions[path.name] = {"section": section, "caption": caption}

    made: list[Path] = []
    curves = {m: precision_recall_curve(idx, positives, ignore) for m, (idx, _) in aligned.items()}
    add(
        pr_curves(curves, figs / "pr_curves.png", f"{dataset.name}: precision-recall"),
        "curves",
        "Precision-recall: mean interpolated precision at 11 recall levels, one line per method. A line higher "
        "up finds the positives earlier; where lines meet at the right, the lists hold the same positives.",
    )
    ks = np.arange(1, 101)
    at_k = {
        m: {
            "R@K": np.array(list(recall_at_k(idx, positives, ks, ignore).values())),
            "mAP@K": map_at_k_curve(idx, positives, ks, ignore),
        }
        for m, (idx, _) in aligned.items()
    }
    add(
        metric_curves(at_k, ks, figs / "recall_map_at_k.png", f"{dataset.name}: metrics against the cut-off K"),
        "curves",
        "R@K (share of queries with a positive in the top K) and mAP@K (AP over the top K, divided by "
        "min(#positives, K)) for K = 1..100, one line per method. Rerankers reorder only their top-k, so their "
        "lines join the global one beyond it.",
    )
    nq = min(num_queries, len(dataset.queries))
    for name, (idx, scores) in aligned.items():
        rows = [_row(dataset, idx, scores, q, positives, ignore, k, name) for q in range(nq)]
        path = topk_grid(
            [r for r, _ in rows],
            figs / f"topk_{_safe(name)}.png",
            [wrap_label(f"query {dataset.query_ids[q]}") for q in range(nq)],
            labels=[lab for _, lab in rows],
        )
        add(
            path,
            "examples",
            f"{name}: the top {k} results of the first {nq} queries. Blue border: the query; green: "
            f"a positive (same instance); red: a negative. Above each result: its rank, gallery id and {name}'s score.",
        )
    if "global only" in aligned:
        _case_figures(dataset, aligned, positives, ignore, k, cases, figs, add, captions)
        _internal_figures(conf, dataset, aligned["global only"][0], positives, ignore, figs, add)
    with atomic_path(figs / "captions.json") as tmp:
        tmp.write_text(json.dumps(captions, indent=2))
    return made


def _internal_figures(conf: dict, dataset, gidx: np.ndarray, positives, ignore, figs: Path, add) -> None:
    """For the first query with a true match in its global list: each ``rrt`` reranker's strongest
    correspondences and each ``ot`` reranker's importance heatmaps (backbone and weights in the title)."""
    items = [it for it in conf["rerankers"] if it["name"] in ("rrt", "ot")]
    pair = next(
        (
            (q, g)
            for q in range(len(dataset.queries))
            for g in gidx[q]
            if g >= 0 and g in set(np.asarray(positives[q]).tolist()) and g not in set(np.asarray(ignore[q]).tolist())
        ),
        None,
    )
    if not items or pair is None:
        return
    q, g = pair
    qid, cid = dataset.query_ids[q], dataset.gallery_ids[g]
    images = (
        load_image(dataset.queries[q][1], dataset.queries[q][2]),
        load_image(dataset.gallery[g][1], dataset.gallery[g][2]),
    )
    for item in items:
        label = item["label"]
        stores = store_paths(conf, item.get("features", conf["extractors"][0]["label"]), dataset)
        if item["name"] == "rrt" and item.get("checkpoint"):
            path = rrt_pair_figure(
                item["checkpoint"], stores, qid, cid, *images, figs / f"rrt_matches_{_safe(label)}.png"
            )
            add(
                path,
                "internals",
                f"{label}: RRT correspondences between query {qid} and its true match {cid}, drawn "
                "only for the strongest (last-layer cross-attention affinity; brighter = stronger). Lines joining the "
                "same object part in both views mean the score rests on real correspondences.",
            )
        elif item["name"] == "ot":
            opts = {k: v for k, v in item.items() if k not in ("name", "label", "features")}
            path = ot_pair_figure(opts, stores, qid, cid, *images, figs / f"ot_{_safe(label)}.png")
            add(
                path,
                "internals",
                f"{label}: optimal transport between query {qid} and its true match {cid}. "
                "Heatmaps: each patch's importance (its OT marginal); boxes of one colour: the patch pairs carrying "
                "the most transport mass. The title gives both scores and names the backbone and its weights.",
            )


def _case_figures(dataset, aligned, positives, ignore, k: int, cases: int, figs: Path, add, captions: dict) -> None:
    """Per reranker: the ``cases`` queries it helped and hurt most, global row over reranked row."""
    gidx, gscores = aligned["global only"]
    before = first_positive_ranks(gidx, positives, ignore)
    for name, (idx, scores) in aligned.items():
        if name == "global only":
            continue
        after = first_positive_ranks(idx, positives, ignore)
        helped, hurt = helped_and_hurt(before, after, cases)
        rows, labels, titles, lines = [], [], [], []
        for kind, qs in (("helped", helped), ("hurt", hurt)):
            for q in qs:
                change = f"{_rank(before[q])} -> {_rank(after[q])}"
                for method, (i, s) in (("global only", (gidx, gscores)), (name, (idx, scores))):
                    row, lab = _row(dataset, i, s, q, positives, ignore, k, method)
                    rows.append(row)
                    labels.append(lab)
                    titles.append(wrap_label(f"{kind}: {dataset.query_ids[q]}\n{method} {change}"))
                lines.append(f"{kind}: query {dataset.query_ids[q]}, first positive {change}")
        if not rows:
            captions[f"cases_{_safe(name)}.png"] = {
                "section": "cases",
                "caption": f"{name}: changed no query's first positive rank: no helped or hurt cases to show.",
                "text": "",
            }
            continue
        path = topk_grid(rows, figs / f"cases_{_safe(name)}.png", titles, labels=labels)
        add(
            path,
            "cases",
            f"{name}: the queries it helped and hurt most, by the rank of the first positive "
            f"(global -> {name}): {'; '.join(lines)}. Each case is two rows: the global order above, {name}'s "
            "order below; green borders positives, red negatives, with gallery ids and each order's own scores.",
        )


def _figure_list(out: Path) -> list[tuple[str, str, str]]:
    """(section, relative path, caption) of every PNG under ``figures/``, in the report's order."""
    figs = out / "figures"
    if not figs.exists():
        return []
    known = json.loads((figs / "captions.json").read_text()) if (figs / "captions.json").exists() else {}
    items = []
    for path in sorted(figs.glob("*.png")):
        if path.name in known:
            section, caption = known[path.name]["section"], known[path.name]["caption"]
        else:
            prefix = next((p for p in EXTERNAL_CAPTIONS if path.name.startswith(p)), None)
            if prefix:
                section, text = EXTERNAL_CAPTIONS[prefix]
                caption = text.format(label=path.stem[len(prefix) :])
            else:
                section, caption = "other", f"{path.stem.replace('_', ' ')} (written by another stage)."
        items.append((section, str(path.relative_to(out)), caption))
    order = {p.name: i for i, p in enumerate(map(Path, known))}
    return sorted(items, key=lambda t: order.get(Path(t[1]).name, len(order)))


def _table_html(results: dict) -> str:
    metrics = list(dict.fromkeys(k for r in results["metrics"].values() for k in r))
    intervals = results.get("intervals") or {}
    ci_head = [f"{next(iter(intervals.values()))['metric']} change vs global [95% CI]"] if intervals else []
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ["method", *metrics, *ci_head, "rerank s/query"])

    def value(v) -> float:  # an undefined metric (NaN, or null read back from results.json) -> NaN
        return float("nan") if v is None else float(v)

    best = {
        m: max(
            (value(r.get(m)) for r in results["metrics"].values() if np.isfinite(value(r.get(m)))), default=float("nan")
        )
        for m in metrics
    }
    rows = []
    for name, vals in results["metrics"].items():
        cells = []
        for m in metrics:
            v = value(vals.get(m))
            txt = f"{100 * v:.2f}" if np.isfinite(v) else "-"
            cells.append(f"<td><b>{txt}</b></td>" if np.isfinite(v) and v == best[m] else f"<td>{txt}</td>")
        if intervals:
            cells.append(f"<td class='ci'>{_interval(intervals.get(name))}</td>")
        t = value(results["seconds_per_query"].get(name))
        rows.append(
            f"<tr><td>{html.escape(name)}</td>{''.join(cells)}<td>{f'{t:.3f}' if np.isfinite(t) else ''}</td></tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _interval(ci: dict | None) -> str:
    """``+1.23 [-0.40, +2.90]`` (points of %) or ``baseline`` / ``-`` when undefined."""
    if ci is None:
        return "baseline"
    vals = [ci.get(k) for k in ("delta", "lo", "hi")]
    if any(v is None or not np.isfinite(v) for v in vals):
        return "-"
    d, lo, hi = (100 * v for v in vals)
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _intervals_note(results: dict) -> str:
    intervals = results.get("intervals") or {}
    if not intervals:
        return ""
    ci = next(iter(intervals.values()))
    return (
        f"<p>Change vs global: {html.escape(ci['metric'])} of the method minus that of the global order, in "
        f"points, with the 95% percentile interval of a paired bootstrap over the {ci['queries']} queries "
        f"({ci['resamples']} resamples, seed {ci['seed']}; relook.eval.bootstrap.paired_bootstrap). An "
        "interval that includes 0 is no evidence of a change on this data.</p>"
    )


def _run_html(results: dict, calibration: dict | None = None) -> str:
    """Header: data and split, sizes, K and top-K, every method's provenance, thresholds, environment."""

    return run_html(results, calibration)


def _notes(results: dict) -> list[str]:
    notes = list((results.get("run") or {}).get("notes", []))
    if results.get("data_note"):
        notes.insert(0, results["data_note"])
    return notes


def _timing_html(results: dict) -> str:
    """Per-stage wall time from ``results["timings"]`` (``pipeline.record_timing``) and time per query."""
    timings = results.get("timings") or {}
    if not timings:
        return (
            "<p>No stage timings recorded: the stages ran before relook recorded them (rerun a stage with "
            "--overwrite to time it).</p>"
        )
    rows, per_query = [], {}
    for stage, t in timings.items():
        unit = next((u for u in ("queries", "images", "gallery") if u in t), "")
        n = t.get(unit, 0)
        each = t["seconds"] / n if n else float("nan")
        per_query[stage] = each if unit in ("queries", "images") else 0.0
        per = {"queries": "per query", "images": "per image", "gallery": "per gallery image"}.get(unit, "")
        rows.append(
            f"<tr><td>{html.escape(stage)}</td><td>{t['seconds']:.3f}</td><td>{n} {unit}</td>"
            f"<td>{each * 1000:.2f} ms {per}</td></tr>"
        )
    table = "<table><tr><th>stage</th><th>seconds</th><th>work</th><th>time each</th></tr>" + "".join(rows) + "</table>"
    run = results.get("run") or {}
    online = sum(v for s, v in per_query.items() if s.startswith("extract:") or s == "search")
    lines = [
        f"<li><b>global only</b>: {online * 1000:.2f} ms per query (extraction of every configured "
        "extractor + search)</li>"
    ]
    for label in run.get("rerankers", {}):
        if f"rerank:{label}" in per_query:
            lines.append(
                f"<li><b>{html.escape(label)}</b>: {(online + per_query[f'rerank:{label}']) * 1000:.2f} ms "
                "per query (the above + its reranking)</li>"
            )
    return (
        table
        + "<p>Time per query, end to end on this machine (index building excluded):</p><ul>"
        + "".join(lines)
        + "</ul>"
    )


def _figure_html(rel: str, caption: str) -> str:
    return (
        f"<figure><img src='{html.escape(rel)}' alt='{html.escape(Path(rel).stem)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


CSS = (
    "body{font-family:sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.note{background:#fff3cd;padding:.6em;border:1px solid #e0c060}"
    ".warn{background:#fde2e1;padding:.5em;border:1px solid #d9534f}figure{margin:1em 0}"
    "figure img{max-width:100%;border:1px solid #ddd}"
    "figcaption{font-size:85%;color:#444;max-width:900px;overflow-wrap:anywhere}"
    ".prov{font-size:90%;overflow-wrap:anywhere}td.ci{white-space:nowrap}"
    "ul.comment li{margin:.2em 0}h2{border-bottom:1px solid #ccc;margin-top:1.6em}"
)


def write_report(conf: dict, results: dict, title: str = "relook report") -> Path:
    """Write ``<out>/report.html`` from ``results`` (``pipeline.evaluate``) and the figures folder."""
    e = html.escape
    out = Path(conf["out"])
    figures = _figure_list(out)
    body = {sid: [] for sid, _ in SECTIONS}

    body["run"].append(_run_html(results, read_calibration(out)))
    body["results"].append(
        "<p>Metrics in %, higher is better; the best value of each column in bold.</p>"
        + _table_html(results)
        + _intervals_note(results)
    )
    body["results"].append(
        "<p><b>What this shows</b></p><ul class='comment'>"
        + "".join(f"<li>{e(line)}</li>" for line in commentary(results).values())
        + "</ul>"
    )
    if results.get("reasons") or results.get("absent"):  # the demo knows why a method lost or is missing
        body["results"].append(
            "<p><b>Compared with the global order (mAP), with reasons:</b></p><ul class='comment'>"
            + "".join(f"<li>{e(line)}</li>" for line in compared(results))
            + "</ul>"
        )
    body["timing"].append(_timing_html(results))
    for section, rel, caption in figures:
        body[section].append(_figure_html(rel, caption))
    cases = json.loads((out / "figures/captions.json").read_text()) if (out / "figures/captions.json").exists() else {}
    for c in cases.values():
        if c.get("section") == "cases" and "text" in c:  # a reranker with no changed query: a line, no figure
            body["cases"].append(f"<p>{e(c['caption'])}</p>")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style>"
        f"</head><body><h1>{e(title)}</h1>"
    ]
    parts += [f"<p class='note'><b>Note:</b> {e(n)}</p>" for n in _notes(results)]
    for sid, heading in SECTIONS:
        if body[sid]:
            parts.append(f"<section id='{sid}'><h2>{e(heading)}</h2>{''.join(body[sid])}</section>")
    parts.append("</body></html>")
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf8")
    return path
