"""The estimate a long rerank prints before it starts (``relook.pipeline.reranking``): the first query is
timed alone, the rest estimated at its rate per pair; the ranking is the one a single call makes."""

import numpy as np

from relook.cli import main
from relook.pipeline import estimate_line, pair_count
from relook.pipeline.reranking import rerank_shortlist_timed
from relook.rerank.base import apply_scores
from relook.types import Shortlist
from tests.test_pipeline import toy  # noqa: F401  (fixture: tiny synthetic run; registers the toy parts)

#: 4 queries, depth 3: 3 + 2 + 3 + 0 = 8 pairs (padding -1 and the 4th column are not scored)
SHORTLIST = Shortlist(
    ["q0", "q1", "q2", "q3"],
    ["g0", "g1", "g2", "g3", "g4"],
    np.array([[0, 1, 2, 3], [1, 2, -1, -1], [3, 4, 0, 1], [-1, -1, -1, -1]]),
    np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, -1, -1], [0.9, 0.8, 0.7, 0.6], [-1.0] * 4]),
    {},
)


class FakeReranker:
    """Deterministic: candidate scores reversed; remembers which queries each call saw."""

    name, label, pairwise, conf = "fake", "fake-label", True, {"top_k": 3}

    def __init__(self):
        self.calls = []

    def rerank_shortlist(self, shortlist, qs, gs, progress=True):
        self.calls.append((list(shortlist.query_ids), progress))
        heads = [row[:3][row[:3] >= 0] for row in shortlist.indices]
        return apply_scores(shortlist, [np.arange(len(h), dtype=float) for h in heads], 3, "fake")


def test_matches_reference_arithmetic():
    assert pair_count(SHORTLIST, 3) == 8 and pair_count(SHORTLIST, 1) == 3 and pair_count(SHORTLIST, 10) == 10
    clock = iter([10.0, 16.0]).__next__  # the first query (3 pairs) takes 6 s: 2 s a pair, 5 pairs left
    lines, fake = [], FakeReranker()
    ranking = rerank_shortlist_timed(fake, SHORTLIST, None, None, True, lines.append, clock=clock)
    assert lines == [
        "rerank:fake-label: ~8 pairs, estimated 0.2 min (the first query's 3 pairs took 6.0 s on this machine)"
    ]
    assert fake.calls == [(["q0"], False), (["q0", "q1", "q2", "q3"], True)]  # timed alone, then all at once
    direct = FakeReranker().rerank_shortlist(SHORTLIST, None, None)
    np.testing.assert_array_equal(ranking.indices, direct.indices)
    np.testing.assert_array_equal(ranking.scores, direct.scores)
    # 90 pairs left at 0.5 s: 45 s = 0.75 min
    assert estimate_line("gv", 100, 10, 5.0).startswith("rerank:gv: ~100 pairs, estimated 0.8 min")


def test_empty_no_estimate_without_a_log_or_a_second_query():
    for log, shortlist, pairwise in (
        (None, SHORTLIST, True),  # --quiet
        ([].append, SHORTLIST.rows(["q0"]), True),  # one query: its time is the whole
        ([].append, SHORTLIST, False),  # query expansion, ASMK: time goes to the gallery, not per pair
    ):
        fake = FakeReranker()
        fake.pairwise = pairwise
        rerank_shortlist_timed(fake, shortlist, None, None, True, log, clock=iter([0.0, 1.0]).__next__)
        assert fake.calls == [(list(shortlist.query_ids), True)]


def test_smoke_cli_prints_the_estimate(toy, capsys):
    cfg, _ = toy
    assert main(["run", "-c", str(cfg), "--no-report"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run: toy_colors at ") and "toy_thumb(default weights)" in out[0]
    assert [
        line for line in out if line.startswith("rerank:toy_reverse: ~48 pairs, estimated ")
    ]  # 12 queries x top_k 4
