import numpy as np
import pytest

from relook.errors import ShapeError
from relook.train.dtop import lr_at
from relook.train.group_size import GroupSizeBatchSampler


def _sizes(n=103, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.integers(200, 900, n)
    return np.stack([h, (h * rng.uniform(0.5, 2.0, n)).astype(int)], 1)


def test_every_batch_one_size_all_once():
    sizes = _sizes()
    s = GroupSizeBatchSampler(sizes, batch_size=8, max_size=384, num_groups=5, seed=0)
    for epoch in range(2):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        seen = []
        for b in batches:
            shapes = {(h, w) for _, h, w in b}
            assert len(shapes) == 1
            (h, w), = shapes
            assert max(h, w) == 384 and h % 16 == 0 and w % 16 == 0
            a = sizes[[i for i, _, _ in b], 1] / sizes[[i for i, _, _ in b], 0]
            assert a.min() * 0.5 <= w / h <= a.max() * 2  # the batch shape follows its members' aspect
            seen += [i for i, _, _ in b]
        assert sorted(seen) == list(range(len(sizes)))


def test_seeded():
    sizes = _sizes()
    a = GroupSizeBatchSampler(sizes, 8, seed=1)
    b = GroupSizeBatchSampler(sizes, 8, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_fixed_size():
    batches = list(GroupSizeBatchSampler(_sizes(), 16, max_size=384, group_size=False))
    assert {(h, w) for b in batches for _, h, w in b} == {(384, 384)}


def test_ranks_partition():
    sizes = _sizes(50)
    per_rank = [list(GroupSizeBatchSampler(sizes, 4, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert len({len(p) for p in per_rank}) == 1
    seen = {i for p in per_rank for b in p for i, _, _ in b}
    assert seen == set(range(50))


def test_empty_and_bad_input():
    assert list(GroupSizeBatchSampler(np.zeros((0, 2)), 4)) == []
    with pytest.raises(ShapeError):
        GroupSizeBatchSampler(np.array([[0, 10]]), 4)


def test_lr_schedule():
    lr, total, warm = 1e-3, 100, 10
    vals = [lr_at(s, total, warm, lr, 1e-4) for s in range(total + 1)]
    assert vals[0] == pytest.approx(lr / warm) and vals[warm - 1] == pytest.approx(lr)
    assert vals[warm] == pytest.approx(lr) and vals[-1] == pytest.approx(lr * 1e-4)
    assert all(a >= b for a, b in zip(vals[warm:], vals[warm + 1:]))
