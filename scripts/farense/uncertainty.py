"""Bootstrap intervals for per-question scores: one model's mean, and two models' difference.

With 40-100 test questions a score moves by several points from one sample of questions to
another; an interval says how far. Percentile bootstrap (Efron and Tibshirani, ch. 13): resample
the questions with replacement, take the mean each time, keep the 2.5th and 97.5th percentiles.
For two models on the same questions the resampling is paired (the same questions for both), so
that what the questions share cancels out of the difference.

Seeded: the same scores and seed give the same interval, so rebuilds agree to the last digit.
"""

from __future__ import annotations

import numpy as np

SAMPLES = 10_000
LEVEL = 0.95


def _indices(n: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def _interval(means: np.ndarray, level: float) -> list[float]:
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [round(float(low), 4), round(float(high), 4)]


def mean_ci(values, seed: int = 0, samples: int = SAMPLES, level: float = LEVEL) -> list[float] | None:
    """Percentile bootstrap interval of the mean of `values`; None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return None
    return _interval(values[_indices(len(values), samples, seed)].mean(axis=1), level)


def paired_difference(a, b, seed: int = 0, samples: int = SAMPLES, level: float = LEVEL) -> dict | None:
    """mean(a) - mean(b) over paired per-question scores, its paired bootstrap interval, and
    whether the interval excludes zero; None when there are no pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in number: {a.shape} and {b.shape}")
    if not len(a):
        return None
    diff = a - b
    ci = _interval(diff[_indices(len(diff), samples, seed)].mean(axis=1), level)
    return {
        "difference": round(float(diff.mean()), 4),
        "ci": ci,
        "excludes_zero": bool(ci[0] > 0 or ci[1] < 0),
        "questions": int(len(diff)),
    }
