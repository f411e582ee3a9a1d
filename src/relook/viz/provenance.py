"""The "what ran" block shared by the report and the query page: data and split, sizes, shortlist and
reranked lengths (clamping warned), each reranker's matcher, weights, thresholds, top-k and checkpoint,
each extractor's weights, seeds, "no confident match" thresholds, and where and when (date, relook
version, git commit, hardware) — all read from ``results.json`` and ``calibration.json``, as HTML."""

from __future__ import annotations

import html

from relook.confidence import describe
from relook.environment import describe as describe_environment


def _li(label: str, text: str) -> str:
    return f"<li><b>{html.escape(label)}</b>: {html.escape(text)}</li>"


def environment_html(env: dict | None, heading: str = "Made with") -> str:
    """Date, relook version, commit, Python / torch, CPU, cores, memory and GPU as a list."""
    if not env:
        return f"<p><b>{html.escape(heading)}:</b> not recorded (results made before relook recorded it)</p>"
    rows = [
        ("date", env.get("date")),
        ("relook", f"{env.get('relook')} (git commit {env.get('git')})"),
        ("hardware", f"{env.get('cpu')}, {env.get('cores')} cores, {env.get('memory')} RAM; GPU {env.get('gpu')}"),
        ("software", f"Python {env.get('python')}, torch {env.get('torch')}, {env.get('platform')}"),
    ]
    return (
        f"<p><b>{html.escape(heading)}</b></p><ul class='prov' title='{html.escape(describe_environment(env))}'>"
        + "".join(_li(k, str(v)) for k, v in rows)
        + "</ul>"
    )


def calibration_html(record: dict | None) -> str:
    """The per-method "no confident match" thresholds (``relook.confidence``) as a list."""

    if not record:
        return ""
    items = "".join(_li(name, describe(record, name)) for name in record.get("methods", {}))
    return (
        "<p><b>Match thresholds</b> (<code>relook query</code> says \u201cno confident match\u201d below them; "
        f"{html.escape(record.get('about', ''))})</p><ul class='prov'>{items}</ul>"
    )


def run_html(results: dict, calibration: dict | None = None) -> str:
    """Header of a report or query page from ``results`` (``pipeline.evaluate``'s dict)."""
    e = html.escape
    run = results.get("run") or {}
    parts = [f"<p><b>Data:</b> {e(results['dataset'])}; split: <b>{e(str(run.get('split') or 'not recorded'))}</b></p>"]
    if run:
        parts.append(
            f"<p><b>{run['queries']}</b> queries, <b>{run['gallery']}</b> gallery images; shortlist "
            f"K = <b>{run['shortlist_k_used']}</b> (configured {run['shortlist_k']})</p>"
        )
        warn = []
        if run.get("clamped"):
            warn.append(
                f"shortlist K was clamped from {run['shortlist_k']} to {run['shortlist_k_used']}: the "
                "gallery has no more candidates per query"
            )
        rr = run.get("rerankers", {})
        if rr:
            items = []
            for label, r in rr.items():
                items.append(
                    f"<li><b>{e(label)}</b> ({e(r['name'])}): reranks the top {r['top_k_used']}"
                    + (f" (configured {r['top_k']})" if r["top_k_used"] < r["top_k"] else "")
                    + (f", seed {e(r['seed'])}" if r.get("seed") else "")
                    + "</li>"
                )
            clamped = [f"{label} ({r['top_k']})" for label, r in rr.items() if r["top_k_used"] < r["top_k"]]
            if clamped:
                warn.append(
                    f"reranked top-K clamped to the shortlist's {run['shortlist_k_used']} for {', '.join(clamped)}"
                )
            parts.append("<p><b>Rerankers</b></p><ul>" + "".join(items) + "</ul>")
        parts += [f"<p class='warn'>Warning: {e(w)}.</p>" for w in warn]
        ex = run.get("extractors", {})
        if ex:
            parts.append(
                "<p><b>Extractors and weights</b></p><ul>"
                + "".join(
                    f"<li><b>{e(label)}</b> ({e(x['name'])}): {e(x['weights'])}"
                    + (f"; seed {e(x['seed'])}" if x.get("seed") not in ("", None) else "")
                    + "</li>"
                    for label, x in ex.items()
                )
                + "</ul>"
            )
        seeds = sorted({f"{label}={x['seed']}" for label, x in {**ex, **rr}.items() if x.get("seed") not in ("", None)})
        parts.append(f"<p><b>Seeds:</b> {e(', '.join(seeds) or 'none recorded')}</p>")
    provenance = [_li(m, p) for m, p in (results.get("provenance") or {}).items() if p]
    if provenance:
        parts.append(
            "<p><b>Provenance of every method</b> (features and weights; each reranker's matcher and its "
            "weights, settings and thresholds, top-k, checkpoint with sha256)</p><ul class='prov'>"
            + "".join(provenance)
            + "</ul>"
        )
    parts.append(calibration_html(calibration))
    env = results.get("environment")
    if not env and results.get("git"):
        parts.append(f"<p><b>git commit:</b> {e(results['git'])}</p>")
    parts.append(environment_html(env, "Evaluated with"))
    return "".join(parts)
