"""Batched log-domain Sinkhorn vs POT's ot.sinkhorn, and partial OT vs the dummy-point construction."""
import numpy as np
import ot
import pytest
import torch

from relook.errors import ConfigError, ShapeError
from relook.rerank.sinkhorn import extend_with_dummy, partial_sinkhorn, sinkhorn


def _problem(b=5, m=7, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, m, 8, generator=g, dtype=torch.float64), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(b, n, 8, generator=g, dtype=torch.float64), dim=-1)
    cost = 1 - x @ y.transpose(1, 2)
    mu = torch.rand(b, m, generator=g, dtype=torch.float64) + 0.1
    nu = torch.rand(b, n, generator=g, dtype=torch.float64) + 0.1
    return cost, mu / mu.sum(1, keepdim=True), nu / nu.sum(1, keepdim=True)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("iters", [5, 100])
def test_matches_reference(iters):
    cost, mu, nu = _problem()
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=iters)
    for i in range(cost.shape[0]):
        ref = ot.sinkhorn(mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), 0.05, numItermax=iters, stopThr=0.0)
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-5, rtol=0)


def test_marginals_hold():
    cost, mu, nu = _problem(seed=1)
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=500)
    torch.testing.assert_close(plan.sum(-1), mu, atol=1e-6, rtol=0)
    torch.testing.assert_close(plan.sum(-2), nu, atol=1e-5, rtol=0)
    assert (plan >= 0).all()


def test_tol_stops_early_and_still_converged():
    cost, mu, nu = _problem(seed=2)
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=10_000, tol=1e-9)
    torch.testing.assert_close(plan.sum(-2), nu, atol=1e-8, rtol=0)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("mass", [0.7, 0.9])
def test_partial_matches_dummy_construction_in_pot(mass):
    cost, mu, nu = _problem(seed=3)
    plan = partial_sinkhorn(cost, mu, nu, mass=mass, eps=0.05, iters=300)
    for i in range(cost.shape[0]):
        m = np.zeros((cost.shape[1] + 1, cost.shape[2] + 1))
        m[:-1, :-1] = cost[i].numpy()
        m[-1, -1] = 1e4  # exp(-1e4 / 0.05) == 0: no mass between the dummies
        a = np.append(mu[i].numpy(), 1 - mass)
        b = np.append(nu[i].numpy(), 1 - mass)
        ref = ot.sinkhorn(a, b, m, 0.05, numItermax=300, stopThr=0.0)[:-1, :-1]
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum((1, 2)), torch.full((cost.shape[0],), mass, dtype=plan.dtype),
                               atol=1e-5, rtol=0)
    assert (plan.sum(-1) <= mu + 1e-6).all() and (plan.sum(-2) <= nu + 1e-6).all()


def test_full_mass_is_plain_ot():
    cost, mu, nu = _problem(seed=4)
    torch.testing.assert_close(partial_sinkhorn(cost, mu, nu, mass=1.0), sinkhorn(cost, mu, nu))


def test_extend_shapes():
    cost, mu, nu = _problem(b=2, m=3, n=4)
    ext, a, b = extend_with_dummy(cost, mu, nu, 0.8)
    assert ext.shape == (2, 4, 5) and a.shape == (2, 4) and b.shape == (2, 5)
    assert torch.isinf(ext[:, -1, -1]).all() and (ext[:, -1, :-1] == 0).all()


def test_empty():
    assert sinkhorn(torch.zeros(0, 4, 4), torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4, 4)
    assert partial_sinkhorn(torch.zeros(0, 4, 4), torch.zeros(0, 4), torch.zeros(0, 4), 0.9).shape == (0, 4, 4)


def test_zero_mass_row_gives_no_nan():
    cost, mu, nu = _problem(b=1, m=4, n=4)
    mu = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)
    plan = sinkhorn(cost, mu, nu)
    assert torch.isfinite(plan).all() and (plan[0, 2:] == 0).all()


def test_bad_input():
    cost, mu, nu = _problem()
    with pytest.raises(ShapeError):
        sinkhorn(cost, mu[:, :3], nu)
    with pytest.raises(ConfigError):
        sinkhorn(cost, mu, nu, eps=0)
    with pytest.raises(ConfigError):
        partial_sinkhorn(cost, mu, nu, mass=1.5)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_wide_cost_range_uses_log_path():
    cost, mu, nu = _problem(b=2, seed=5)
    cost = cost * 30  # -C/eps spans ~1200: too wide for exp, solved by the logsumexp path
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=50)
    assert torch.isfinite(plan).all()
    for i in range(2):
        ref = ot.sinkhorn(mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), 0.05, method="sinkhorn_log",
                          numItermax=50, stopThr=0.0)
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-5, rtol=0)
