"""The distillation teacher: global cosine + w * symmetric Chamfer similarity (Eq. T1-T2), against loops."""

import numpy as np
import pytest
import torch

from relook.errors import ShapeError
from relook.train.teacher import chamfer_similarity, teacher_of_sides, teacher_score


def _ref_chamfer(q, c, qm, cm):
    """Slow obvious (T1): each valid token's best cosine on the other side, averaged, both ways."""
    q = [v / np.linalg.norm(v) for v, m in zip(q, qm) if not m]
    c = [v / np.linalg.norm(v) for v, m in zip(c, cm) if not m]
    if not q or not c:
        return 0.0
    a = np.mean([max(float(x @ y) for y in c) for x in q])
    b = np.mean([max(float(y @ x) for x in q) for y in c])
    return 0.5 * (a + b)


def test_matches_reference():
    r = np.random.default_rng(0)
    B, n, m, d = 4, 5, 7, 6
    q, c = r.standard_normal((B, n, d)), r.standard_normal((B, m, d))
    qm, cm = r.random((B, n)) < 0.3, r.random((B, m)) < 0.3
    qm[0] = True  # a side with no token: chamfer 0
    got = chamfer_similarity(torch.tensor(q), torch.tensor(c), torch.tensor(qm), torch.tensor(cm)).numpy()
    want = [_ref_chamfer(q[b], c[b], qm[b], cm[b]) for b in range(B)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    gq, gc = r.standard_normal((B, 3)), r.standard_normal((B, 3))
    cos = (gq * gc).sum(1) / np.linalg.norm(gq, axis=1) / np.linalg.norm(gc, axis=1)
    t = teacher_score(*(torch.tensor(v) for v in (gq, gc, q, c, qm, cm)), weight=0.5).numpy()
    np.testing.assert_allclose(t, cos + 0.5 * np.array(want), atol=1e-6)


def test_hand_computed():
    """Identical token sets: chamfer 1; q = {e1}, c = {e1, e2}: q->c 1, c->q (1 + 0)/2 -> 0.75."""
    e = torch.eye(2)
    assert chamfer_similarity(e[None], e[None]).item() == pytest.approx(1.0)
    assert chamfer_similarity(e[None, :1], e[None]).item() == pytest.approx(0.75)
    side = {"global": e[:1], "local": e[None], "mask": torch.zeros(1, 2, dtype=torch.bool)}
    assert teacher_of_sides(side, side).item() == pytest.approx(2.0)


def test_empty_and_bad_input():
    assert chamfer_similarity(torch.zeros(2, 0, 4), torch.ones(2, 3, 4)).tolist() == [0.0, 0.0]
    with pytest.raises(ShapeError):
        chamfer_similarity(torch.zeros(2, 3, 4), torch.zeros(3, 3, 4))
    with pytest.raises(ShapeError):
        teacher_of_sides({"global": None, "local": torch.zeros(1, 1, 2), "mask": None}, {"global": None})


def test_teacher_equals_the_chamfer_reranker():
    """The training teacher (batched torch, padded) and the ``chamfer`` reranker (numpy, per query) are two
    implementations of one score: on padded random tokens they must agree, so neither drifts alone."""
    import numpy as np

    from relook.rerank.chamfer import chamfer_similarity as reranker_chamfer
    from relook.train.teacher import chamfer_similarity as teacher_chamfer

    rng = np.random.default_rng(0)
    q = rng.standard_normal((12, 16))
    cands = [rng.standard_normal((m, 16)) for m in (3, 7, 12)]
    padded = np.zeros((3, 12, 16))
    mask = np.ones((3, 12), bool)
    for i, c in enumerate(cands):
        padded[i, : len(c)], mask[i, : len(c)] = c, False
    got = teacher_chamfer(
        torch.tensor(np.repeat(q[None], 3, 0)), torch.tensor(padded), None, torch.tensor(mask)
    ).numpy()
    np.testing.assert_allclose(got, reranker_chamfer(q, cands), rtol=1e-5, atol=1e-6)
