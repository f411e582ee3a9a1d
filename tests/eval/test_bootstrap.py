"""``paired_bootstrap`` against the exact bootstrap distribution of a tiny case (all Q^Q resamples
enumerated), against ``scipy.stats.bootstrap`` (paired, percentile) and on hand-computed edge cases."""

import itertools

import numpy as np
import pytest
from scipy import stats

from relook.eval.bootstrap import paired_bootstrap


def exact_percentiles(diff, level=0.95):
    """The percentile interval of the exact bootstrap distribution: every one of the Q^Q resamples of
    the Q paired differences is equally likely; quantile = the smallest mean whose CDF reaches it."""
    q = len(diff)
    means = np.sort([np.mean([diff[i] for i in pick]) for pick in itertools.product(range(q), repeat=q)])
    cdf = np.arange(1, means.size + 1) / means.size
    tail = (1 - level) / 2
    return means[np.searchsorted(cdf, tail)], means[np.searchsorted(cdf, 1 - tail)]


def test_matches_reference():
    """Q = 4 queries: the estimate with many resamples lands on the exact interval's atoms (4^4 = 256
    resamples; 0.025 * 256 = 6.4 is no atom boundary, so the empirical quantile is stable)."""
    a = np.array([0.9, 0.5, 0.7, 0.2])
    b = np.array([0.4, 0.6, 0.1, 0.2])
    lo_ref, hi_ref = exact_percentiles(a - b)
    delta, lo, hi = paired_bootstrap(a, b, n=200_000, seed=3)
    assert delta == pytest.approx(np.mean(a - b), abs=1e-12)
    assert lo == pytest.approx(lo_ref, abs=1e-9) and hi == pytest.approx(hi_ref, abs=1e-9)
    assert lo < delta < hi


def test_matches_scipy():
    """50 queries of AP-like values: scipy's paired percentile bootstrap of the mean difference agrees to
    Monte-Carlo precision (both with 20000 resamples, different random streams)."""
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 1, 50)
    a = np.clip(b + rng.normal(0.05, 0.2, 50), 0, 1)
    res = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=20000,
        method="percentile",
        random_state=1,
    )
    delta, lo, hi = paired_bootstrap(a, b, n=20000, seed=0)
    se = res.standard_error
    assert delta == pytest.approx(np.mean(a - b))
    assert abs(lo - res.confidence_interval.low) < 0.1 * se and abs(hi - res.confidence_interval.high) < 0.1 * se


def test_paired_narrower_than_unpaired():
    """Two methods that move together: the paired interval is much narrower than the spread of either."""
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 1, 200)
    a = b + 0.01
    delta, lo, hi = paired_bootstrap(a, b, n=500, seed=0)
    assert delta == pytest.approx(0.01) and lo == pytest.approx(0.01) and hi == pytest.approx(0.01)


def test_seeded():
    a, b = np.random.default_rng(2).uniform(0, 1, (2, 30))
    assert paired_bootstrap(a, b, n=300, seed=5) == paired_bootstrap(a, b, n=300, seed=5)
    assert paired_bootstrap(a, b, n=300, seed=5) != paired_bootstrap(a, b, n=300, seed=6)
    assert all(isinstance(v, float) for v in paired_bootstrap(a, b, n=10))


def test_empty():
    """NaN queries are dropped in pairs; nothing left: NaNs; one query: a zero-width interval."""
    nan = float("nan")
    assert all(np.isnan(paired_bootstrap([], [])))
    assert all(np.isnan(paired_bootstrap([nan, 0.5], [0.2, nan])))
    assert paired_bootstrap([nan, 0.5, 0.9], [0.1, 0.2, nan], n=50) == (pytest.approx(0.3),) * 3


def test_bad_input():
    with pytest.raises(ValueError, match="3 queries"):
        paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="n must be"):
        paired_bootstrap([1], [1], n=0)
