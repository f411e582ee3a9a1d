"""relook.eval.comparison: one line per method against the global order, on hand-made results."""

from relook.eval.comparison import commentary, compare


def _results(**maps):
    return {"metrics": {m: {"mAP": v, "R@1": v} for m, v in maps.items()}}


def test_smoke():
    lines = commentary(_results(**{"global only": 0.092, "rrt": 0.066, "gv": 0.2, "aqe": 0.092}))
    assert lines == [
        "rrt: below the global order on this data (mAP 6.6 vs 9.2)",
        "gv: above the global order (mAP 20.0 vs 9.2)",
        "aqe: same as the global order (mAP 9.2 vs 9.2)",
    ]


def test_reasons_and_absent():
    """A reason is printed only for a method below the global order; absent methods are named with why."""
    res = {**_results(**{"global only": 0.5, "rrt": 0.4, "gv": 0.6}), "absent": {"rrt-maxepi": "needs cameras"}}
    lines = commentary(res, reasons={"rrt": "trained for 2 epochs", "gv": "never shown"})
    assert lines[0] == "rrt: below the global order on this data (mAP 40.0 vs 50.0); likely why: trained for 2 epochs"
    assert lines[1] == "gv: above the global order (mAP 60.0 vs 50.0)"
    assert lines[2] == "rrt-maxepi: absent: needs cameras"


def test_near_perfect_baseline():
    """Below a near-perfect global order the line says there was little to gain."""
    line = commentary(_results(**{"global only": 0.98, "asmk": 0.9}))[0]
    assert line.startswith(
        "asmk: below the global order on this data (mAP 90.0 vs 98.0); likely why: the global "
        "order is already near perfect"
    )


def test_other_metric():
    res = {"metrics": {"global only": {"mAP": 0.5, "R@1": 0.9}, "ot": {"mAP": 0.6, "R@1": 0.8}}}
    assert commentary(res, metric="R@1") == ["ot: below the global order on this data (R@1 80.0 vs 90.0)"]


def test_empty():
    """No global row: only absent methods; NaN scores are said to be not comparable, never 'above'."""
    assert commentary({"metrics": {}}) == []
    assert commentary({"metrics": {"gv": {"mAP": 0.5}}, "absent": {"rrt": "x"}}) == ["rrt: absent: x"]
    nan = commentary(_results(**{"global only": 0.5, "gv": float("nan")}))
    assert nan == ["gv: not comparable with the global order (mAP missing)"]
    assert compare(float("nan"), 0.5) == "n/a" and compare(0.5, 0.5) == "same"
