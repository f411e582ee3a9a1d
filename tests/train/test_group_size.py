import numpy as np
import pytest

from relook.errors import ConfigError, ShapeError
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
            ((h, w),) = shapes
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


@pytest.mark.parametrize("world", [2, 4, 8])
def test_ranks_split_global_batch(world):
    """Under DDP the batch_size is global: at every step the ranks' shares together form one batch of at most
    batch_size images of one size, a full batch split into equal shares of batch_size / world; every image
    is used once per epoch over all ranks. With 2 ranks (every group remainder here >= 2 images) each step's
    union is exactly the batch one process draws at that step."""
    sizes = _sizes(203)  # 4 aspect groups of 51, 51, 51, 50 images: remainders 3, 3, 3, 2 at batch 16
    single = GroupSizeBatchSampler(sizes, 16, seed=0, num_groups=4)
    ranks = [GroupSizeBatchSampler(sizes, 16, seed=0, num_groups=4, rank=r, world_size=world) for r in range(world)]
    for epoch in range(2):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        reference = list(single)
        per_rank = [list(s) for s in ranks]
        assert all(len(p) == len(per_rank[0]) == len(s) for p, s in zip(per_rank, ranks))
        seen, full = [], 0
        for step in range(len(per_rank[0])):
            shares = [p[step] for p in per_rank]
            assert all(shares)  # no rank idles
            together = [x for share in shares for x in share]
            assert len({(h, w) for _, h, w in together}) == 1 and len(together) <= 16
            if world == 2:
                assert sorted(together) == sorted(reference[step])  # the single process's batch
            if len(together) == 16:
                assert {len(share) for share in shares} == {16 // world}
                full += 1
            seen += [i for i, _, _ in together]
        assert sorted(seen) == list(range(len(sizes)))  # every image once per epoch
        assert full >= 4 * (50 // 16) - 4  # at most one full batch per group gives up images to its remainder


def test_empty_and_bad_input():
    assert list(GroupSizeBatchSampler(np.zeros((0, 2)), 4)) == []
    with pytest.raises(ShapeError):
        GroupSizeBatchSampler(np.array([[0, 10]]), 4)
    with pytest.raises(ConfigError, match="multiple"):
        GroupSizeBatchSampler(_sizes(), 10, rank=0, world_size=4)
    with pytest.raises(ConfigError, match="ranks"):
        GroupSizeBatchSampler(_sizes(6), 4, num_groups=3, rank=0, world_size=4)


def test_lr_schedule():
    lr, total, warm = 1e-3, 100, 10
    vals = [lr_at(s, total, warm, lr, 1e-4) for s in range(total + 1)]
    assert vals[0] == pytest.approx(lr / warm) and vals[warm - 1] == pytest.approx(lr)
    assert vals[warm] == pytest.approx(lr) and vals[-1] == pytest.approx(lr * 1e-4)
    assert all(a >= b for a, b in zip(vals[warm:], vals[warm + 1 :]))
