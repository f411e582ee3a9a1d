"""paired_bootstrap against scipy.stats.bootstrap (paired, percentile) and a slow loop with the same draws."""

import numpy as np
import pytest
from scipy import stats

from relook.errors import ShapeError
from relook.eval.bootstrap import paired_bootstrap


def _data(q=120, seed=1):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.3, 1.0, q)
    return a, np.clip(a + rng.normal(0.03, 0.05, q), 0, 1)


def test_matches_reference_slow_loop():
    a, b = _data()
    delta, lo, hi = paired_bootstrap(a, b, n=500, seed=3)
    rng = np.random.default_rng(3)  # the same draws, one resample at a time, chunked as the function draws
    means = []
    for start in range(0, 500, 256):
        idx = rng.integers(0, len(a), (min(500, start + 256) - start, len(a)))
        for row in idx:
            means.append(np.mean([b[i] - a[i] for i in row]))
    assert delta == pytest.approx(np.mean(b - a))
    assert lo == pytest.approx(np.percentile(means, 2.5))
    assert hi == pytest.approx(np.percentile(means, 97.5))


def test_matches_scipy_bootstrap():
    a, b = _data(q=200)
    delta, lo, hi = paired_bootstrap(a, b, n=20000, seed=0)
    ref = stats.bootstrap(
        (a, b),
        lambda x, y: np.mean(y - x),
        paired=True,
        vectorized=False,
        n_resamples=20000,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    ci = ref.confidence_interval
    width = ci.high - ci.low
    assert lo == pytest.approx(ci.low, abs=0.05 * width)  # Monte Carlo error of two independent bootstraps
    assert hi == pytest.approx(ci.high, abs=0.05 * width)
    assert lo < delta < hi


def test_interval_excludes_zero_only_for_a_real_gain():
    a, b = _data(q=300)
    assert paired_bootstrap(a, b)[1] > 0  # mean gain 0.03 on 300 queries
    rng = np.random.default_rng(5)
    noise = a + rng.normal(0, 0.05, a.size)
    d, lo, hi = paired_bootstrap(a, noise)
    assert lo < 0 < hi


def test_nan_queries_left_out_and_empty():
    a, b = _data(q=50)
    a2, b2 = np.r_[a, np.nan], np.r_[b, 0.7]
    assert paired_bootstrap(a2, b2, seed=2) == paired_bootstrap(a, b, seed=2)
    assert all(np.isnan(paired_bootstrap([], [])))


def test_seeded_and_bad_input():
    a, b = _data()
    assert paired_bootstrap(a, b, seed=4) == paired_bootstrap(a, b, seed=4)
    with pytest.raises(ShapeError):
        paired_bootstrap(a, b[:-1])
