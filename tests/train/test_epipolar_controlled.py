"""The controlled case of the epipolar guidance: one fixed camera pose, so the epipolar grid is the same for
every pair and a network can learn it from the token positions alone (the contents are random).

Known answer: a model that has learned the lines puts far more than the chance share (the indicator's base
rate, ~15% here) of its softmax cross-attention on epipolar cells; one that has not sits at chance. The
share is read exactly as the experiments read it (``relook.viz.epipolar.cross_attention_maps``: last
layer, head-averaged softmax, query -> candidate block and back), the loss goes through the training hook
(``EpipolarGuidance.extra_loss``) with the guidance's defaults. Tiny RRT (2 layers, d 64), seeded, CPU.
"""

import numpy as np
import pytest
import torch

from relook.geometry.epipolar import epipolar_indicator, fundamental_from_cameras
from relook.losses.epipolar import epipolar_attention_share
from relook.models.position_encoding import grid_positions
from relook.models.rrt import RRT
from relook.train.epipolar import TrainingGuidance as EpipolarGuidance
from relook.viz.epipolar import cross_attention_maps

S, B, CONTENT = 7, 8, 0.3  # grid side, pairs a step, std of the random local contents
ARCH = {"d_model": 64, "nhead": 4, "num_layers": 2, "dim_feedforward": 128}


def cameras():
    K = np.array([[300.0, 0, 111.5], [0, 300.0, 111.5], [0, 0, 1]])  # 224 x 224 images = the network frame
    c, s = np.cos(0.4), np.sin(0.4)
    R2 = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    return {"a": {"K": K, "R": np.eye(3), "t": np.zeros(3)}, "b": {"K": K, "R": R2, "t": np.array([1.0, 0.1, 0.3])}}


def side(local):
    n = local.shape[0]
    return {
        "local": local,
        "pos": grid_positions(S, S).expand(n, -1, -1),
        "mask": torch.zeros(n, S * S, dtype=torch.bool),
        "scale_idx": None,
        "global": None,
    }


def share(model, I12, I21, seed=123, n=32):
    g = torch.Generator().manual_seed(seed)
    q, c = (CONTENT * torch.randn(n, S * S, 128, generator=g) for _ in range(2))
    a12, a21 = cross_attention_maps(model, side(q), side(c))
    return float((0.5 * (epipolar_attention_share(a12, I12) + epipolar_attention_share(a21, I21))).mean())


def train(steps=250, lr=1e-3, seed=0, arch=None, **conf):
    """Train the tiny RRT on the guidance loss alone; returns (model, share, chance, logit std at the end)."""
    torch.manual_seed(seed)
    model = RRT(variant="sop", **(arch or ARCH))
    g = EpipolarGuidance(cameras=cameras(), image_sizes={"a": (224, 224), "b": (224, 224)}, **conf)
    F, _ = g.fundamentals(["a"], ["b"])
    I12, I21 = (t.float().expand(B, -1, -1) for t in g.indicators(F))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    batch = {"query_ids": ["a"] * B, "candidate_ids": ["b"] * B, "labels": torch.ones(B), "model": model}
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        q, c = (CONTENT * torch.randn(B, S * S, 128, generator=gen) for _ in range(2))
        s = side(q)
        out = model(q, c, s["pos"], s["pos"], return_last_input=True, return_raw_cross=True)
        loss = g.extra_loss(batch, out)
        opt.zero_grad()
        loss.backward()
        opt.step()
    A12, _ = g.supervised_logits(model, out)
    chance = float(0.5 * (I12.mean() + I21.mean()))
    return (
        model,
        share(model, I12[:1].expand(32, -1, -1), I21[:1].expand(32, -1, -1)),
        chance,
        float(A12.detach().std()),
    )


def test_indicator_is_the_fixed_pose():
    """The grid the guidance supervises is the one of the cameras (exact F, identity pixel map)."""
    C = cameras()
    F = fundamental_from_cameras(C["a"]["K"], C["a"]["R"], C["a"]["t"], C["b"]["K"], C["b"]["R"], C["b"]["t"])
    g = EpipolarGuidance(cameras=C, image_sizes={"a": (224, 224), "b": (224, 224)})
    want = epipolar_indicator(F, (224, 224), (224, 224), S)
    got = g.indicators(g.fundamentals(["a"], ["b"])[0])
    for w, x in zip(want, got):
        assert torch.equal(w[None].float(), x.float())
    assert 0.1 < float(want[0].mean()) < 0.2


@pytest.mark.slow  # ~7 CPU-s each: 250 training steps
@pytest.mark.parametrize("guidance", ["epi", "maxepi"])
def test_learns_lines_from_positions(guidance):
    """Default guidance (head-mean scaled logits + prior offset): the share rises far above chance."""
    _, got, chance, _ = train(guidance=guidance)
    assert got > 2.0 * chance, (got, chance)


@pytest.mark.slow  # ~7 CPU-s: 250 training steps
def test_literal_reading_stays_near_chance():
    """The old reading (full-width unscaled logits, literal sigma(A)) on the same budget: the share stays near
    chance (6-layer d-128 RRT at lr 1e-4: logits squashed to std 0.6 and share 15.3% vs chance 15.0%, see
    ``relook.losses.epipolar``); what the default reading fixes."""
    _, got, chance, _ = train(guidance="epi", logits="sum", offset="zero")
    assert got < 1.5 * chance, (got, chance)
