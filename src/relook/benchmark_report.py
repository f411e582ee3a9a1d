"""The table of ``relook benchmark``: per-query scores -> summary numbers -> results.json, results.md, plot.

Each row of each test set: mAP, R@1, mP@10 (means of the per-query values, x100 in the table), ms/query,
s/image and s/pair (``relook.benchmark_costs``),
and the delta of mAP to the global order with its paired per-query bootstrap 95% interval
(``relook.eval.bootstrap.paired_bootstrap``). "pooled (room)" concatenates the queries of every test set
with ``role: room`` (the ones where the global order leaves room) and bootstraps over them. A row run ``over`` a
global row (e.g. OT on a ViT's tokens, on that ViT's CLS order) also gets the delta to that row, its own
global, in the column "delta to own global" (the fair test of what the reranker adds to its own model).
A row with ``baseline: LABEL`` also gets its mAP delta to that row (same queries, same bootstrap): the
"vs baseline" column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from relook.benchmark_costs import per_unit, pool_costs
from relook.eval.bootstrap import paired_bootstrap
from relook.io import atomic_path, json_text
from relook.viz.deltas import plot_deltas

POOLED = "pooled (room)"
METRICS = (("mAP", "AP"), ("R@1", "R@1"), ("mP@10", "P@10"))


def _row(scores: dict, base: dict, n: int, seed: int, own: tuple[str, dict] | None = None) -> dict[str, float]:
    out = {
        name: float(np.nanmean(scores[key])) if np.isfinite(scores[key]).any() else float("nan")
        for name, key in METRICS
    }
    out["ms/query"] = float(scores.get("ms", float("nan")))
    out["s/image"], out["s/pair"] = per_unit(scores.get("costs"))
    delta, lo, hi = paired_bootstrap(scores["AP"], base["AP"], n=n, seed=seed)  # method first, baseline second
    out.update({"delta_mAP": delta, "delta_lo": lo, "delta_hi": hi})
    if own is not None:  # the row's own global (the shortlist it reranks): the same paired bootstrap
        delta, lo, hi = paired_bootstrap(scores["AP"], own[1]["AP"], n=n, seed=seed)
        out.update({"vs": own[0], "own_delta_mAP": delta, "own_delta_lo": lo, "own_delta_hi": hi})
    return out


def _pool(per_set: dict[str, dict], label: str) -> dict[str, np.ndarray] | None:
    room = [s for s in per_set.values() if s["role"] == "room"]
    if not room or any(label not in s["scores"] for s in room):
        return None
    pooled = {key: np.concatenate([s["scores"][label][key] for s in room]) for _, key in METRICS}
    ms = [s["scores"][label]["ms"] for s in room]
    counts = [len(s["scores"][label]["AP"]) for s in room]
    pooled["ms"] = float(np.average(ms, weights=counts)) if sum(counts) else float("nan")
    pooled["costs"] = pool_costs([s["scores"][label].get("costs") or {} for s in room])
    return pooled


def summarise(bench, per_set, labels, absent, chosen, val_record, splits, meta) -> dict[str, Any]:
    """The results dict: per set (and pooled) each row's summary numbers, plus data, settings, provenance."""
    n, seed = int(bench["bootstrap"]["n"]), int(bench["bootstrap"]["seed"])
    order = ["global", *[r["label"] for r in bench["rows"]]]
    on = {r["label"]: r["over"] for r in bench["rows"] if r.get("over")}  # row -> its own global row
    tables: dict[str, dict] = {}
    for name, s in per_set.items():
        sc = s["scores"]
        tables[name] = {
            lab: _row(sc[lab], sc["global"], n, seed, (on[lab], sc[on[lab]]) if on.get(lab) in sc else None)
            for lab in order
            if lab in sc
        }
    pooled_base = _pool(per_set, "global")
    if pooled_base is not None:
        tables[POOLED] = {}
        for lab in order:
            p = _pool(per_set, lab)
            own = _pool(per_set, on[lab]) if lab in on else None
            if p is not None:
                tables[POOLED][lab] = _row(p, pooled_base, n, seed, None if own is None else (on[lab], own))
    _vs_baselines(bench, per_set, tables, n, seed)
    return {
        "tables": tables,
        "order": order,
        "absent": absent,
        "sets": {
            f"{name}:{split}": {"how": how, **info, "role": bench["sets"].get(name, {}).get("role", "extra")}
            for (name, split), (how, info) in splits.items()
        },
        "room_sets": [name for name, s in per_set.items() if s["role"] == "room"],
        "test_split": {name: f"{name}:{s['split']}" for name, s in per_set.items()},
        "chosen_on_val": {lab: {k: chosen[lab][k] for k in rec["chosen"]} for lab, rec in val_record.items()},
        "val": val_record,
        "settings": {lab: chosen.get(lab) for lab in labels},
        "bootstrap": {"n": n, "seed": seed, "level": 0.95, "resamples": "queries, paired"},
        "provenance": meta,
        "data_root": str(bench["data_root"]),
    }


def _vs_baselines(bench: dict, per_set: dict, tables: dict, n: int, seed: int) -> None:
    """Rows with ``baseline: LABEL`` get ``vs_baseline`` = (LABEL, delta, lo, hi) of mAP, row minus LABEL, paired
    over the same queries, per set and pooled (added in place to ``tables``)."""
    for row in bench["rows"]:
        lab, base = row["label"], row.get("baseline")
        if base is None:
            continue
        for name, s in per_set.items():
            if lab in s["scores"] and base in s["scores"] and lab in tables[name]:
                d = paired_bootstrap(s["scores"][lab]["AP"], s["scores"][base]["AP"], n=n, seed=seed)
                tables[name][lab]["vs_baseline"] = [base, *d]
        a, b = _pool(per_set, lab), _pool(per_set, base)
        if POOLED in tables and a is not None and b is not None and lab in tables[POOLED]:
            tables[POOLED][lab]["vs_baseline"] = [base, *paired_bootstrap(a["AP"], b["AP"], n=n, seed=seed)]


def _fmt(v: float, scale: float = 100.0, digits: int = 1) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v * scale:.{digits}f}"


def _delta(r: dict, key: str = "delta") -> str:
    return f"{_fmt(r[f'{key}_mAP'], 100, 2)} [{_fmt(r[f'{key}_lo'], 100, 2)}, {_fmt(r[f'{key}_hi'], 100, 2)}]"


def table_md(rows: dict[str, dict], order: list[str], absent: dict[str, str]) -> list[str]:
    """One markdown table: a line per row (absent rows say why); a "delta to own global" column when a row
    runs on a global row of its own, a "vs baseline" column when a row names a baseline."""
    own = any("vs" in r for r in rows.values())
    vs = any("vs_baseline" in r for r in rows.values())
    head = "| row | mAP | R@1 | mP@10 | delta mAP [95% CI] |" + (" delta to own global [95% CI] |" if own else "")
    head += " vs baseline: delta mAP [95% CI] |" if vs else ""
    lines = [
        head + " ms/query | s/image | s/pair |",
        "|---|---:|---:|---:|---|" + ("---|" if own else "") + ("---|" if vs else "") + "---:|---:|---:|",
    ]
    for lab in order:
        if lab in rows:
            r = rows[lab]
            cells = [_fmt(r["mAP"]), _fmt(r["R@1"]), _fmt(r["mP@10"]), "" if lab == "global" else _delta(r)]
            if own:
                cells.append(f"{_delta(r, 'own_delta')} vs {r['vs']}" if "vs" in r else "")
            if vs:
                b = r.get("vs_baseline")
                cells.append(f"{b[0]}: {_fmt(b[1], 100, 2)} [{_fmt(b[2], 100, 2)}, {_fmt(b[3], 100, 2)}]" if b else "")
            cells += [_fmt(r["ms/query"], 1.0, 1)]
            cells += [_fmt(r.get("s/image", float("nan")), 1.0, 3), _fmt(r.get("s/pair", float("nan")), 1.0, 4)]
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        elif lab in absent:
            lines.append(f"| {lab} | {absent[lab]} | | | |" + (" |" if own else "") + (" |" if vs else "") + " | | |")
    return lines


def markdown(results: dict) -> str:
    """results.md: the pooled table first, then one table per test set, data and weights under them."""
    order, absent, tables = results["order"], results["absent"], results["tables"]
    out = ["# relook benchmark: real multi-view photos", ""]
    out.append(
        "Metrics x100 on each set's **test** split; delta mAP = row minus the global order (Lite0 GeM shortlist), "
        f"paired per-query bootstrap 95% percentile interval ({results['bootstrap']['n']} resamples of the queries, "
        f"seed {results['bootstrap']['seed']}). ms/query: wall time of the rerank stage per query on the machine "
        "that ran it (global: the search stage), features extracted beforehand, so it includes reading the "
        "feature stores. s/image: the row's extractor's extraction stage per image (global: the global "
        "extractor's); s/pair: the rerank stage per scored query-candidate pair (min(top_k, K) per query), for "
        "rerankers that score pairs (relook.benchmark_costs). mP@10: revisited-protocol precision at 10. "
        "Delta to own global (rows run on a global row, e.g. OT on a ViT's tokens over that ViT's CLS order): "
        "row minus that global row, same bootstrap."
    )
    names = [POOLED] + [n for n in tables if n != POOLED] if POOLED in tables else list(tables)
    for name in names:
        sets = results["sets"]
        if name == POOLED:
            head = f"## {POOLED}: " + " + ".join(results["room_sets"]) + " (test; queries concatenated)"
        else:
            s = sets[results["test_split"][name]]
            head = f"## {name} ({s['role']}): {s['how']}; {s['queries']} queries, gallery {s['gallery']}"
        out += ["", head, "", *table_md(tables[name], order, absent)]
    out += ["", "## Settings chosen on validation (test read once with them)", ""]
    for lab, rec in results["val"].items():
        grid = ", ".join(f"{k}: {v}" for k, v in rec["chosen"].items())
        tried = "; ".join(f"{k} {100 * v:.2f}" for k, v in rec["val_mAP_mean_over_sets"].items())
        base = list(rec["val_mAP_global"].values())
        base = f"{100 * np.mean(base):.2f}" if base else "-"
        out.append(
            f"- {lab}: {grid} (val mAP, mean over the val splits: {tried}; {rec.get('baseline', 'global')} {base})"
        )
    vals = [f"{k}: {v['how']} ({v['queries']} queries)" for k, v in results["sets"].items() if k.endswith(":val")]
    if vals:
        out.append(f"- val splits: {'; '.join(vals)}")
    out += ["", "## Data and weights", ""]
    out.append(f"- data: {results['data_root']} (read in place); splits written to <out>/splits/*.csv")
    records = {}
    for prov in results["provenance"].values():
        for key, m in prov.get("stores", {}).items():
            records.setdefault(key, m.get("weights", ""))
        for sub in (v for v in prov.values() if isinstance(v, dict) and "stores" in v):
            for key, m in sub["stores"].items():
                records.setdefault(key, m.get("weights", "") + (f" + {m['head']}" if m.get("head") else ""))
    out += [f"- {k}: {v}" for k, v in records.items()]
    for lab, conf in results["settings"].items():
        if conf is not None:
            out.append(f"- {lab}: " + ", ".join(f"{k}={v}" for k, v in conf.items()))
    gits = {p.get("git") for p in results["provenance"].values()}
    out.append(f"- git commit: {', '.join(sorted(g for g in gits if g))}")
    return "\n".join(out) + "\n"


def write_outputs(results: dict, out: Path) -> list[Path]:
    """results.json, results.md and deltas.png under ``out`` (each written atomically)."""

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("results.json", json_text(results, indent=2)), ("results.md", markdown(results))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
        paths.append(out / name)
    paths.append(plot_deltas(results, out / "deltas.png"))
    return paths
