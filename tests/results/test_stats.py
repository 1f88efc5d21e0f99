"""Bootstrap intervals and the paired randomization test (mbert_retrieval.results.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from mbert_retrieval.results.stats import bootstrap_ci, paired_test, weighted_mean


def _ndcg_like(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.beta(2, 3, size=n), 0, 1)


def test_interval_contains_the_mean_and_is_seeded() -> None:
    values = _ndcg_like(300, 1)
    ci = bootstrap_ci(values, resamples=1000, seed=0)
    assert ci.low < ci.mean < ci.high
    assert ci.mean == pytest.approx(values.mean())
    assert ci.n == 300 and ci.resamples == 1000
    # the same seed gives the same interval, another seed another one
    assert bootstrap_ci(values, resamples=1000, seed=0) == ci
    assert bootstrap_ci(values, resamples=1000, seed=1) != ci


def test_interval_width_matches_the_standard_error() -> None:
    values = _ndcg_like(2000, 2)
    ci = bootstrap_ci(values, resamples=2000, seed=0)
    se = values.std(ddof=1) / np.sqrt(values.size)
    # a normal 95% interval is +-1.96 se; the percentile bootstrap agrees within sampling noise
    assert (ci.high - ci.low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.08)


def test_constant_values_give_a_zero_width_interval() -> None:
    ci = bootstrap_ci([0.5] * 40)
    assert ci.low == ci.mean == ci.high == 0.5


def test_parts_are_averaged_and_resampled_separately() -> None:
    small = np.array([1.0, 1.0])  # a 2-query forum weighs as much as a 200-query forum
    large = np.zeros(200)
    assert weighted_mean([small, large]) == pytest.approx(0.5)
    ci = bootstrap_ci([small, large], resamples=500)
    # resampling within each part keeps each part's mean fixed here: no spread at all
    assert ci.low == ci.high == pytest.approx(0.5)


def test_paired_test_on_identical_runs_gives_p_one() -> None:
    values = _ndcg_like(300, 3)
    test = paired_test(values, values.copy())
    assert test.p_value == 1.0
    assert test.mean_diff == 0.0
    assert test.diff_ci.low == test.diff_ci.high == 0.0


def test_paired_test_on_a_clearly_better_run_gives_a_small_p() -> None:
    a = _ndcg_like(300, 4)
    b = np.clip(a + 0.05 + np.random.default_rng(5).normal(0, 0.05, size=a.size), 0, 1)
    test = paired_test(a, b, resamples=10_000)
    assert test.mean_diff == pytest.approx(b.mean() - a.mean())
    assert test.mean_diff > 0.03
    assert test.p_value < 0.001  # as small as 10,000 resamples can show: 1/10,001
    assert test.diff_ci.low > 0
    # swapping the runs flips the difference, not the p-value
    swapped = paired_test(b, a, resamples=10_000)
    assert swapped.mean_diff == pytest.approx(-test.mean_diff)
    assert swapped.p_value == pytest.approx(test.p_value)


def test_paired_test_on_noise_is_not_significant() -> None:
    rng = np.random.default_rng(6)
    a = _ndcg_like(200, 7)
    b = np.clip(a + rng.normal(0, 0.1, size=a.size), 0, 1)
    b += a.mean() - b.mean()  # no systematic difference
    assert paired_test(a, b).p_value > 0.5


def test_paired_test_p_value_matches_exact_enumeration() -> None:
    # 10 queries: all 2^10 sign patterns can be enumerated; the Monte Carlo p converges to the exact one
    a = np.array([0.1, 0.4, 0.3, 0.9, 0.5, 0.2, 0.7, 0.6, 0.35, 0.8])
    b = a + np.array([0.2, 0.1, -0.05, 0.15, 0.1, 0.05, 0.12, -0.02, 0.08, 0.1])
    d = b - a
    signs = np.array([[1 if (i >> j) & 1 else -1 for j in range(10)] for i in range(1024)])
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    assert paired_test(a, b, resamples=50_000).p_value == pytest.approx(exact, abs=0.004)


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2], [0.1, 0.2, 0.3])
