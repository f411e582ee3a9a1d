"""Demo lines comparing every method with the global order, with a reason for a method below it or absent

Why: a results table where a reranker quietly scores below the shortlist it started from invites the
reader to miss it. ``commentary`` turns ``pipeline.evaluate``'s results into short lines such as
``rrt: below the global order on this data (mAP 6.6 vs 9.2)``, adds a reason when one is known (given by
the caller, or read off the data: a near-perfect global order leaves a reranker little but room to lose),
and names methods that were left out and why. Reports and the demo print these lines under the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

BASELINE = "global only"  # the row of ``pipeline.evaluate`` that scores the shortlist itself
NEAR_PERFECT = 0.95  # a global score at or above this leaves almost nothing to gain


def compare(value: float, baseline: float, tolerance: float = 5e-4) -> str:
    """``"above"``, ``"below"`` or ``"same"`` (within ``tolerance``); ``"n/a"`` when either is not finite."""
    if not (math.isfinite(value) and math.isfinite(baseline)):
        return "n/a"
    if value > baseline + tolerance:
        return "above"
    if value < baseline - tolerance:
        return "below"
    return "same"


def commentary(
    results: Mapping,
    metric: str = "mAP",
    baseline: str = BASELINE,
    reasons: Mapping[str, str] | None = None,
    absent: Mapping[str, str] | None = None,
) -> list[str]:
    """Lines comparing every method of ``results["metrics"]`` with ``baseline`` on ``metric``.

    ``reasons``: method -> why it may fall below (printed only when it does); ``absent``: method -> why it
    is not in the table. ``results`` may also carry ``reasons`` / ``absent`` (the demo stores them there);
    the arguments take precedence. Values are fractions (printed x100, as the tables are).
    """
    rows = results.get("metrics", {})
    reasons = {**results.get("reasons", {}), **(reasons or {})}
    absent = {**results.get("absent", {}), **(absent or {})}
    if baseline not in rows:
        return [f"{m}: absent: {why}" for m, why in absent.items()]
    base = float(rows[baseline].get(metric, float("nan")))
    lines = []
    for method, vals in rows.items():
        if method == baseline:
            continue
        v = float(vals.get(metric, float("nan")))
        verdict = compare(v, base)
        scores = f"({metric} {100 * v:.1f} vs {100 * base:.1f})"
        if verdict == "below":
            why = [reasons[method]] if method in reasons else []
            if base >= NEAR_PERFECT:
                why.append(
                    f"the global order is already near perfect ({metric} {100 * base:.1f}), so reordering "
                    f"can mostly only lose"
                )
            line = f"{method}: below the global order on this data {scores}"
            lines.append(line + (f"; likely why: {'; '.join(why)}" if why else ""))
        elif verdict == "above":
            lines.append(f"{method}: above the global order {scores}")
        elif verdict == "same":
            lines.append(f"{method}: same as the global order {scores}")
        else:
            lines.append(f"{method}: not comparable with the global order ({metric} missing)")
    lines += [f"{m}: absent: {why}" for m, why in absent.items() if m not in rows]
    return lines
