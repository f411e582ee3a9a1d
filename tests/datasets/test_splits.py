"""Group splits: disjoint, complete, seeded, by group; the folder dataset reads one split of real UKBench."""

import numpy as np
import pytest
from tests.shared_data import shared

from relook.datasets.base import load_dataset
from relook.datasets.splits import split_groups
from relook.errors import ConfigError


def test_matches_reference():
    """Against the rule written out: sorted names, permuted by the seed, cut at rounded cumulative shares."""
    names = [f"g{i:03d}" for i in range(37)]
    got = split_groups(reversed(names), (0.5, 0.25, 0.25), seed=3)
    perm = np.random.default_rng(3).permutation(37)
    expect = {}
    for rank, i in enumerate(perm):
        expect[names[i]] = "train" if rank < 18 else ("val" if rank < 28 else "test")  # round(18.5)=18, round(27.75)=28
    assert got == expect
    assert split_groups(names, (0.5, 0.25, 0.25), seed=4) != got


def test_bad_input():
    with pytest.raises(ConfigError, match="fractions"):
        split_groups(["a", "b"], (0.5, 0.6, 0.1))


def test_folder_split_by_group_on_ukbench():
    root = shared("multiview", "ukbench")
    parts = {
        s: load_dataset("folder", root=root, csv="groups.csv", split=s, split_by_group=True, check=False)
        for s in ("train", "val", "test")
    }
    groups = {s: set(d.info["groups"]) for s, d in parts.items()}
    assert [len(groups[s]) for s in ("train", "val", "test")] == [112, 37, 37]  # 186 objects, 60/20/20
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    for d in parts.values():  # every image of a kept object, 4 views each
        assert len(d.gallery) == 4 * len(d.info["groups"])
    with pytest.raises(ConfigError, match="split_by_group"):
        load_dataset("folder", root=root, csv="groups.csv", split="all", split_by_group=True, check=False)
