"""Bootstrap intervals for per-question scores: one model's mean, and two models' difference.

With 40-100 test questions a score moves by several points from one sample of questions to
another; an interval says how far. Percentile bootstrap (Efron and Tibshirani, ch. 13): resample
the questions with replacement, take the mean each time, keep the 2.5th and 97.5th percentiles.
For two models on the same questions the resampling is paired (the same questions for both), so
that what the questions share cancels out of the difference.

Several training runs of one model (training.replicates: the same recipe from other seeds) add a
second source of chance: on Gemma 3 270M, five seeds of one recipe scored 0.30 to 0.48 on the same
132 questions (BENCHMARKS.md 7.4), as far apart as the questions' own interval is wide. Over runs
the bootstrap has two levels (Davison and Hinkley, section 3.8): each sample draws the questions,
shared by every model, and for each model as many of its runs as it has, both with replacement.
With one run per model it gives the paired interval exactly.

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


def _run_means(runs: np.ndarray, questions: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Per sample: the mean over the drawn runs (picks, samples x runs) of their scores on the
    drawn questions (samples x questions)."""
    return np.take_along_axis(runs[picks], questions[:, None, :], axis=2).mean(axis=(1, 2))


def _runs(values) -> np.ndarray:
    runs = np.asarray(values, dtype=np.float64)
    if runs.ndim != 2:
        raise ValueError(f"runs must be a list of per-question score lists, got shape {runs.shape}")
    return runs


def runs_difference(runs_a, runs_b, seed: int = 0, samples: int = SAMPLES, level: float = LEVEL) -> dict | None:
    """mean(runs_a) - mean(runs_b), each a list of training runs' per-question scores on the same
    questions in the same order, with the two-level bootstrap interval: the questions drawn once
    for both sides (paired), each side's runs drawn from its own. None when there are no questions."""
    a, b = _runs(runs_a), _runs(runs_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores differ in number: {a.shape[1]} and {b.shape[1]}")
    n = a.shape[1]
    if not n:
        return None
    questions = _indices(n, samples, seed)  # the paired bootstrap's draws, so one run each gives its interval
    runs_rng = np.random.default_rng([seed, 1])
    picks_a = runs_rng.integers(0, len(a), size=(samples, len(a)))
    picks_b = runs_rng.integers(0, len(b), size=(samples, len(b)))
    ci = _interval(_run_means(a, questions, picks_a) - _run_means(b, questions, picks_b), level)
    return {
        "difference": round(float(a.mean() - b.mean()), 4),
        "ci": ci,
        "excludes_zero": bool(ci[0] > 0 or ci[1] < 0),
        "questions": int(n),
        "runs": [int(len(a)), int(len(b))],
    }


def runs_mean_ci(runs, seed: int = 0, samples: int = SAMPLES, level: float = LEVEL) -> list[float] | None:
    """The two-level bootstrap interval of the mean over training runs and questions; None when
    there are no questions."""
    runs = _runs(runs)
    if not runs.shape[1]:
        return None
    questions = _indices(runs.shape[1], samples, seed)
    picks = np.random.default_rng([seed, 1]).integers(0, len(runs), size=(samples, len(runs)))
    return _interval(_run_means(runs, questions, picks), level)
