""" "No confident match" on a real run: Kodak photos warped into 4 views (``tests/test_query.py``'s run:
EfficientNet-Lite0 ImageNet globals, ALIKED locals, gv and aqe). The stored thresholds are checked against
``calibrate`` on scores labelled here straight from the run's CSV; a held-back view of a run photo is a
confident gv match, a Kodak photo the run never saw is not."""

import csv
import json

import pytest

import relook
from relook.cli import main
from relook.confidence import FILE, confidence
from relook.errors import DataError
from relook.eval.calibration import calibrate
from relook.types import Ranking, Shortlist
from tests.shared_data import shared
from tests.test_query import HELD_GROUP, bench, run  # noqa: F401  (module fixtures: the warped run)

UNSEEN = "kodim20"  # a Kodak photo that is in no group of the run


def best_scores(run_dir, root, name, top_k):
    """Per query: (best same-group score, best other-group score) among its first ``top_k`` candidates,
    labelled by the groups of ``run.csv`` (a slow loop, independent of relook's ground-truth code)."""
    with open(root / "run.csv", newline="") as f:
        group = {r["image"]: r["group"] for r in csv.DictReader(f)}
    path = run_dir / ("shortlist.npz" if name == "global only" else f"rankings/{name}.npz")
    r = (Shortlist if name == "global only" else Ranking).load(path)
    best_pos, best_neg, single = [], [], ([], [])
    for q, qid in enumerate(r.query_ids):
        pos, neg = [], []
        for c in range(min(top_k, r.k)):
            g = r.indices[q, c]
            if g >= 0 and r.gallery_ids[g] != qid:
                (pos if group[r.gallery_ids[g]] == group[qid] else neg).append(float(r.scores[q, c]))
        best_pos.append(max(pos, default=float("nan")))
        best_neg.append(max(neg, default=float("nan")))
        single[0].extend(pos)
        single[1].extend(neg)
    return best_pos, best_neg, single


def test_matches_reference(bench, run):
    root, _ = bench
    record = json.loads((run / FILE).read_text())
    assert set(record["methods"]) == {"global only", "gv", "aqe"}
    for name, top_k in (("global only", 40), ("gv", 40), ("aqe", 100)):
        entry = record["methods"][name]
        best_pos, best_neg, (pos, neg) = best_scores(run, root, name, top_k)
        ref = calibrate(best_pos, best_neg)
        assert entry["threshold"] == pytest.approx(ref.threshold, rel=1e-6), name
        assert (entry["tpr"], entry["fpr"], entry["positives"], entry["negatives"]) == (
            pytest.approx(ref.tpr),
            pytest.approx(ref.fpr),
            31,  # 8 photos x 4 views, one held back: 31 queries, each with views of its photo
            31,
        )
        assert entry["candidate_fpr"] == pytest.approx(sum(s >= ref.threshold for s in neg) / len(neg))
        assert entry["candidate_tpr"] == pytest.approx(sum(s >= ref.threshold for s in pos) / len(pos))
    assert record["methods"]["gv"]["balanced_accuracy"] > 0.9


def test_smoke(bench, run, tmp_path, capsys):
    """The held-back view: a confident gv match with its own photo first; an unseen photo: no confident
    match, with the threshold and how it was calibrated on the same line."""
    root, held = bench
    unseen = shared("photos", "Kodak24", f"{UNSEEN}.jpg")
    known, other = relook.query([held, unseen], run, method="gv", k=5)
    threshold = json.loads((run / FILE).read_text())["methods"]["gv"]["threshold"]
    assert known.threshold == pytest.approx(threshold) and known.confident
    assert known.hits[0].gallery_id.split("/")[-2] == HELD_GROUP and known.hits[0].score >= threshold
    assert not other.confident and other.hits[0].score < threshold
    assert [h.confident for h in other.hits] == [False] * 5
    assert confidence(run, "gv", known.hits[0].score) == (pytest.approx(threshold), True)
    assert confidence(run, "gv", other.hits[0].score) == (pytest.approx(threshold), False)
    assert (
        main(["query", str(unseen), "--run", str(run), "--method", "gv", "-k", "3", "--html", str(tmp_path / "p.html")])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[-1] == "confident" and [r.split()[-1] for r in out[2:5]] == ["no"] * 3
    assert out[5].startswith("no confident match: best gv score") and "threshold" in out[5]
    assert "balanced accuracy" in out[5] and "folder" in out[5]
    assert "no confident match" in (tmp_path / "p.html").read_text()


def test_empty(bench, run, tmp_path):
    """A run without calibration.json (made before it existed) is calibrated again by the first query,
    to the same thresholds; ``confidence`` on a folder without one says which command makes it."""
    root, held = bench
    saved = (run / FILE).read_bytes()
    (run / FILE).unlink()
    with pytest.raises(DataError, match="relook evaluate"):
        confidence(run, "gv", 10.0)
    relook.query([held], run, method="aqe", k=1)
    assert json.loads((run / FILE).read_text()) == json.loads(saved)
    with pytest.raises(DataError, match="'rrt'"):
        confidence(run, "rrt", 10.0)
