"""Batched log-domain Sinkhorn vs POT's ot.sinkhorn; partial OT vs the dummy-point construction run in POT, POT's
exact partial-OT LP (eps -> 0) and POT's entropic partial solver (the documented difference)."""

import numpy as np
import ot
import pytest
import torch

from relook.errors import ConfigError, ShapeError
from relook.rerank.sinkhorn import _sinkhorn_scaling, extend_with_dummy, partial_sinkhorn, sinkhorn


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
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(iters, dtype):
    cost, mu, nu = _problem()
    plan = sinkhorn(cost.to(dtype), mu.to(dtype), nu.to(dtype), eps=0.05, iters=iters).double()
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
    torch.testing.assert_close(
        plan.sum((1, 2)), torch.full((cost.shape[0],), mass, dtype=plan.dtype), atol=1e-5, rtol=0
    )
    assert (plan.sum(-1) <= mu + 1e-6).all() and (plan.sum(-2) <= nu + 1e-6).all()


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_full_mass_is_plain_ot():
    """a = 1 is standard entropic OT: POT's own ot.sinkhorn on the problem as given (no dummy point)."""
    cost, mu, nu = _problem(seed=4)
    plan = partial_sinkhorn(cost, mu, nu, mass=1.0, eps=0.05, iters=100)
    for i in range(cost.shape[0]):
        ref = ot.sinkhorn(mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), 0.05, numItermax=100, stopThr=0.0)
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mass", [0.6, 0.8])
def test_partial_tends_to_exact_partial_ot(mass):
    """As eps -> 0 the entropic partial plan's cost tends to the exact partial-OT optimum (POT's LP solver
    ot.partial.partial_wasserstein), and the plan carries exactly the mass a."""
    cost, mu, nu = _problem(b=3, seed=6)
    plan = partial_sinkhorn(cost, mu, nu, mass=mass, eps=0.002, iters=5000)
    for i in range(cost.shape[0]):
        exact = ot.partial.partial_wasserstein(mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), m=mass)
        w_exact, w_ours = float((exact * cost[i].numpy()).sum()), float((plan[i] * cost[i]).sum())
        assert abs(float(plan[i].sum()) - mass) < 1e-6
        assert w_exact - 1e-9 <= w_ours <= w_exact + 0.02 * mass, (w_ours, w_exact)


def test_partial_differs_from_pot_entropic_partial_as_documented():
    """POT's entropic_partial_wasserstein regularises the plan over the given points only (Bregman
    projections onto {T 1 <= mu, T^T 1 <= nu, sum T = a}); the dummy-point construction regularises the
    extended plan. At the same eps both carry mass a and respect the marginals, but the plans differ; at small
    eps both costs come within 1e-3 of the exact optimum (POT's solver underflows below eps ~ 0.005)."""
    cost, mu, nu = _problem(b=1, seed=7)
    c, a, b = cost[0].numpy(), mu[0].numpy(), nu[0].numpy()
    ours = partial_sinkhorn(cost, mu, nu, mass=0.8, eps=0.05, iters=2000)[0].numpy()
    pot = ot.partial.entropic_partial_wasserstein(a, b, c, reg=0.05, m=0.8, numItermax=2000, stopThr=1e-12)
    for t in (ours, pot):
        assert abs(t.sum() - 0.8) < 1e-6 and (t.sum(1) <= a + 1e-6).all() and (t.sum(0) <= b + 1e-6).all()
    assert np.abs(ours - pot).max() > 1e-4  # two different regularised problems
    exact = float((ot.partial.partial_wasserstein(a, b, c, m=0.8) * c).sum())
    small = partial_sinkhorn(cost, mu, nu, mass=0.8, eps=0.01, iters=5000)[0].numpy()
    pot_small = ot.partial.entropic_partial_wasserstein(a, b, c, reg=0.01, m=0.8, numItermax=5000, stopThr=1e-12)
    assert abs((small * c).sum() - exact) < 1e-3 and abs((pot_small * c).sum() - exact) < 1e-3


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
        ref = ot.sinkhorn(
            mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), 0.05, method="sinkhorn_log", numItermax=50, stopThr=0.0
        )
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("absorb_at", [None, 0.5])
def test_absorption_matches_reference(absorb_at):
    """Row offsets up to 10 (200 in C / eps) drive POT's own scalings past exp(177), the float64 default of
    ``absorb_at``: the solver must move them into the kernel (0.5: at nearly every check) and still agree."""
    cost, mu, nu = _problem(seed=6)
    cost = cost + torch.linspace(0, 10, cost.shape[1], dtype=cost.dtype)[:, None]
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=100, absorb_at=absorb_at)
    largest = 0.0
    for i in range(cost.shape[0]):
        ref, log = ot.sinkhorn(
            mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), 0.05, numItermax=100, stopThr=0.0, log=True
        )
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-5, rtol=0)
        largest = max(largest, np.abs(np.log(log["u"])).max(), np.abs(np.log(log["v"])).max())
    assert largest > 177  # the case does leave the default range


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_underflowing_scaling_falls_back_to_log_domain():
    cost = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 0.5], [0.5, 1.0, 1.0]]])
    mu = torch.tensor([[1e-45, 0.5, 0.5]])  # subnormal float32 mass: its scaling underflows to 0
    nu = torch.tensor([[0.3, 0.3, 0.4]])
    assert _sinkhorn_scaling(cost / -0.05, mu, nu, 100, 0.0, 21.8) is None  # the check catches it
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=100)
    ref = ot.sinkhorn(
        mu[0].double().numpy(), nu[0].double().numpy(), cost[0].double().numpy(), 0.05, numItermax=100, stopThr=0.0
    )
    assert torch.isfinite(plan).all()
    np.testing.assert_allclose(plan[0].numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_constant_cost_offset_keeps_the_plan():
    cost, mu, nu = _problem(b=2, seed=7)
    cost = cost + 100.0  # exp(-100 / 0.05) underflows; the per-problem shift of the kernel removes it
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=50)
    for i in range(2):
        ref = ot.sinkhorn(
            mu[i].numpy(), nu[i].numpy(), cost[i].numpy(), 0.05, method="sinkhorn_log", numItermax=50, stopThr=0.0
        )
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("spread", [1.0, 30.0])  # 30: C / eps spans ~1200, the logsumexp path
def test_forbidden_empty_column(spread):
    """A zero-mass column whose pairs are all forbidden (e.g. padding) stays empty; the rest is the plan
    of the problem without it."""
    cost, mu, nu = _problem(b=2, m=5, n=4, seed=8)
    cost = cost * spread
    cost[:, :, -1] = float("inf")
    nu = torch.cat([nu[:, :-1] / nu[:, :-1].sum(1, keepdim=True), torch.zeros(2, 1, dtype=nu.dtype)], dim=1)
    plan = sinkhorn(cost, mu, nu, eps=0.05, iters=50)
    assert torch.isfinite(plan).all() and (plan[:, :, -1] == 0).all()
    for i in range(2):
        ref = ot.sinkhorn(
            mu[i].numpy(),
            nu[i, :-1].numpy(),
            cost[i, :, :-1].numpy(),
            0.05,
            method="sinkhorn_log",
            numItermax=50,
            stopThr=0.0,
        )
        np.testing.assert_allclose(plan[i, :, :-1].numpy(), ref, atol=1e-5, rtol=0)
