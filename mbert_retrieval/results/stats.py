"""Confidence over queries: bootstrap intervals and a paired randomization test (numpy only).

A dataset's score is the mean of per-query values; a dataset split into parts (CQADupStack's 12
forums, CodeSearchNet's 6 languages) scores the mean of its parts' means. Both are a weighted mean
of per-query values, weight ``1 / (n_parts * n_queries_in_part)``, and every function here takes
the values as a list of parts (one array for a plain dataset).

- :func:`bootstrap_ci`: percentile bootstrap, queries resampled with replacement within each part
  (stratified), ``resamples`` times with a seeded generator.
- :func:`paired_test`: two runs scored on the same queries. Two-sided **paired randomization
  (sign-flip) test** (Fisher's randomization test, as recommended for IR by Smucker, Allan and
  Carterette, CIKM 2007): under the null hypothesis the two runs are exchangeable per query, so the
  sign of each per-query difference is flipped at random; ``p = (1 + #{|T*| >= |T|}) / (1 + R)``
  with ``T`` the observed weighted mean difference. Identical runs give ``p = 1``. It also gives a
  bootstrap interval of the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_BLOCK_ELEMENTS = 4_000_000  # resamples x queries per block, to bound memory


def _parts(values: np.ndarray | Sequence[float] | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Accept one flat sequence of values or a list of per-part arrays."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        parts = [values]
    elif len(values) and all(np.ndim(v) == 0 for v in values):
        parts = [np.asarray(values, dtype=np.float64)]
    else:
        parts = [np.asarray(v, dtype=np.float64) for v in values]
    if not parts or any(p.ndim != 1 or p.size == 0 for p in parts):
        raise ValueError("need at least one non-empty 1-d array of per-query values")
    if any(not np.all(np.isfinite(p)) for p in parts):
        raise ValueError("per-query values must be finite")
    return [p.astype(np.float64) for p in parts]


def weighted_mean(values: np.ndarray | Sequence[float] | Sequence[np.ndarray]) -> float:
    """The dataset score: the mean over parts of each part's mean (the plain mean for one part)."""
    parts = _parts(values)
    return float(np.mean([p.mean() for p in parts]))


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int  # queries
    resamples: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "resamples": self.resamples}


def _bootstrap_means(parts: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` bootstrap replicates of the mean of part means."""
    total = np.zeros(resamples)
    for p in parts:
        n = p.size
        block = max(1, min(resamples, _BLOCK_ELEMENTS // n))
        for start in range(0, resamples, block):
            stop = min(resamples, start + block)
            idx = rng.integers(0, n, size=(stop - start, n))
            total[start:stop] += p[idx].mean(axis=1)
    return total / len(parts)


def bootstrap_ci(
    values: np.ndarray | Sequence[float] | Sequence[np.ndarray],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the (part-weighted) mean over queries."""
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError("resamples must be >= 1 and confidence in (0, 1)")
    parts = _parts(values)
    rng = np.random.default_rng(seed)
    means = _bootstrap_means(parts, resamples, rng)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(
        mean=weighted_mean(parts),
        low=float(low),
        high=float(high),
        n=sum(p.size for p in parts),
        resamples=resamples,
        confidence=confidence,
    )


@dataclass(frozen=True)
class PairedTest:
    """Run B minus run A on the same queries."""

    mean_diff: float  # score(B) - score(A)
    p_value: float  # two-sided paired randomization test
    diff_ci: Interval  # bootstrap interval of the difference
    n: int  # paired queries
    resamples: int
    method: str = "paired randomization (sign-flip) test, two-sided"

    def to_dict(self) -> dict[str, object]:
        return {
            "mean_diff": self.mean_diff,
            "p_value": self.p_value,
            "diff_low": self.diff_ci.low,
            "diff_high": self.diff_ci.high,
            "n": self.n,
            "resamples": self.resamples,
            "method": self.method,
        }


def paired_test(
    a: np.ndarray | Sequence[float] | Sequence[np.ndarray],
    b: np.ndarray | Sequence[float] | Sequence[np.ndarray],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTest:
    """Paired randomization test of ``b`` against ``a`` (same queries, same order, same parts)."""
    pa, pb = _parts(a), _parts(b)
    if [p.size for p in pa] != [p.size for p in pb]:
        raise ValueError("paired values must have the same parts and queries")
    diffs = [y - x for x, y in zip(pa, pb, strict=True)]
    weights = np.concatenate([np.full(d.size, 1.0 / (len(diffs) * d.size)) for d in diffs])
    wd = np.concatenate(diffs) * weights
    observed = float(wd.sum())
    rng = np.random.default_rng(seed)
    n = wd.size
    block = max(1, min(resamples, _BLOCK_ELEMENTS // n))
    at_least = 0
    tol = 1e-12 * max(1.0, abs(observed))
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        signs = rng.integers(0, 2, size=(stop - start, n), dtype=np.int8) * 2 - 1
        flipped = signs @ wd
        at_least += int(np.count_nonzero(np.abs(flipped) >= abs(observed) - tol))
    p_value = (1 + at_least) / (1 + resamples)
    ci = bootstrap_ci(diffs, resamples=min(resamples, 1000), confidence=confidence, seed=seed)
    return PairedTest(mean_diff=observed, p_value=p_value, diff_ci=ci, n=n, resamples=resamples)


__all__ = ["Interval", "PairedTest", "bootstrap_ci", "paired_test", "weighted_mean"]
