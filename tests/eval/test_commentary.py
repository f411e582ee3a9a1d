"""The generated "what this shows" lines, on hand-made results."""

import math

from relook.eval.commentary import commentary


def results(**rows):
    return {"metrics": rows}


def test_hand_computed():
    lines = commentary(
        results(
            **{
                "global only": {"R@1": 0.40, "mAP": 0.092},
                "rrt": {"R@1": 0.35, "mAP": 0.066},
                "gv": {"R@1": 0.50, "mAP": 0.120},
                "aqe": {"R@1": 0.45, "mAP": 0.094},
                "asmk": {"R@1": 0.38, "mAP": 0.101},
            }
        )
    )
    assert lines["rrt"] == "rrt: below the global order on this data (mAP 6.6 vs 9.2)"
    assert lines["gv"] == "gv: above the global order on this data (mAP 12.0 vs 9.2); the best method here"
    assert lines["aqe"] == "aqe: on par with the global order (mAP 9.4 vs 9.2), though R@1 rises 40.0 -> 45.0"
    assert lines["asmk"] == "asmk: above the global order on this data (mAP 10.1 vs 9.2), though R@1 falls 40.0 -> 38.0"
    assert (
        lines["global only"].startswith("global only: the global order") and "mAP 9.2; R@1 40.0" in lines["global only"]
    )


def test_other_protocols():
    """Revisited Oxford/Paris rows: the Medium mAP is the headline; no baseline: numbers alone."""
    lines = commentary(
        results(
            **{
                "global only": {"E:mAP": 0.8, "M:mAP": 0.6, "M:mP@1": 0.9},
                "gv": {"E:mAP": 0.7, "M:mAP": 0.65, "M:mP@1": 0.95},
            }
        )
    )
    assert lines["gv"] == "gv: above the global order on this data (M:mAP 65.0 vs 60.0); the best method here"
    alone = commentary(results(ot={"MAP@R": 0.3}))
    assert alone == {"ot": "ot: scored alone (MAP@R 30.0)"}


def test_empty():
    assert commentary({"metrics": {}}) == {}
    assert commentary(results(x={"weird": 1.0})) == {"x": "x: no metrics to comment on"}
    lines = commentary(results(**{"global only": {"mAP": math.nan}, "rrt": {"mAP": 0.1}}))
    assert "no mAP" in lines["global only"] and lines["rrt"] == "rrt: scored alone (mAP 10.0)"
