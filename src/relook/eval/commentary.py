"""One generated line per method saying what its numbers show against the global order, e.g.
``rrt: below the global order on this data (mAP 6.6 vs 9.2)``. The report prints these under the results
table so a reranker that loses to the shortlist it reorders is named as such, not left for the reader
to spot in a table of decimals. Pure: reads a ``results`` dict (``pipeline.evaluate``), no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

BASELINE = "global only"
#: the metric a line is about, in order of preference (labels protocol, revisited Medium, MAP@R, R@1)
HEADLINE = ("mAP", "M:mAP", "MAP@R", "R@1")
#: second metric mentioned when it moves the other way
SECOND = ("R@1", "M:mP@1", "P@1")


def _pick(metrics: Mapping[str, Mapping[str, float]], prefs: tuple[str, ...], skip: str = "") -> str | None:
    keys = [k for row in metrics.values() for k in row]
    return next((k for k in prefs if k in keys and k != skip), None)


def _pts(value: float) -> str:
    return f"{100 * value:.1f}"


def commentary(results: Mapping, tolerance: float = 0.005) -> dict[str, str]:
    """``{method: line}`` for every method of ``results["metrics"]`` (fractions in [0, 1]).

    Each reranker is compared with ``"global only"`` on the headline metric (mAP when present): above,
    below, or on par (a difference under ``tolerance``, i.e. 0.5 points by default); a second metric (R@1)
    is named when it moves the other way, and the best method says so. A method without a finite score
    is said to have none. Without a ``"global only"`` row, every line states the numbers alone.
    """
    metrics: Mapping[str, Mapping[str, float]] = results.get("metrics", {})
    head = _pick(metrics, HEADLINE)
    if head is None:
        return {m: f"{m}: no metrics to comment on" for m in metrics}
    second = _pick(metrics, SECOND, skip=head)
    finite = {m: float(r[head]) for m, r in metrics.items() if head in r and math.isfinite(float(r[head]))}
    best = max(finite.values()) if len(finite) > 1 else None
    base = finite.get(BASELINE)
    lines = {}
    for method, row in metrics.items():
        value = finite.get(method)
        if value is None:
            lines[method] = f"{method}: no {head} (no query with a positive was scored)"
            continue
        if method == BASELINE or base is None:
            tail = f"; {second} {_pts(row[second])}" if second and second in row else ""
            role = (
                "the global order, the baseline every reranker is compared with"
                if method == BASELINE
                else "scored alone"
            )
            lines[method] = f"{method}: {role} ({head} {_pts(value)}{tail})"
            continue
        diff = value - base
        if abs(diff) < tolerance:
            verdict = "on par with the global order"
        else:
            verdict = ("above" if diff > 0 else "below") + " the global order on this data"
        text = f"{method}: {verdict} ({head} {_pts(value)} vs {_pts(base)})"
        if second and second in row and second in metrics.get(BASELINE, {}):
            d2 = float(row[second]) - float(metrics[BASELINE][second])
            if abs(d2) >= tolerance and (abs(diff) < tolerance or (d2 > 0) != (diff > 0)):
                text += (
                    f", though {second} {'rises' if d2 > 0 else 'falls'} "
                    f"{_pts(metrics[BASELINE][second])} -> {_pts(row[second])}"
                )
        if best is not None and value == best and diff >= tolerance:
            text += "; the best method here"
        lines[method] = text
    return lines
