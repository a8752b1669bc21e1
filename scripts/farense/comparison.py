"""Paired comparisons of the evaluated models on the same test questions.

What the user asks: does QLoRA know the facts as well as LoRA (lora - qlora), what does each
adapter add to the model it was trained on (qlora - base, lora - base_full), and what does int4
cost before any training (base_full - base)? Each difference comes with a paired bootstrap
interval (farense.uncertainty), overall and per support label.

With training.replicates above 1 each adapter was also trained from the next seeds; across_runs
then gives each model's runs, their mean and a two-level interval (questions and runs), and the
same differences over the runs. One run's difference can be all seed: on Gemma 3 270M the first
seed put QLoRA 17 points above LoRA, an interval excluding zero, and five seeds of each 0.9
points below it, [-9.7, +7.0] (BENCHMARKS.md 7.4).
"""

from __future__ import annotations

import statistics

from . import uncertainty
from .support import LABELS

# (minuend, subtrahend, what the difference measures)
PAIRS = (
    ("lora", "qlora", "LoRA minus QLoRA"),
    ("qlora", "base", "QLoRA minus its int4 base"),
    ("lora", "base_full", "LoRA minus its unquantized base"),
    ("base_full", "base", "unquantized minus int4 base (what int4 costs)"),
)
MEASURES = ("fact_correct", "f1", "exact_match")


def _scores(rows: list[dict], measure: str) -> dict[str, float]:
    return {r["id"]: float(r[measure]) for r in rows if r.get(measure) is not None}


def _keep(group: str):
    return (lambda r: True) if group == "overall" else (lambda r: r["support"] == group)


def compare(evals: dict[str, dict], seed: int = 0, samples: int = uncertainty.SAMPLES) -> dict:
    """{pair name: {"label", "overall" | support label: {measure: paired_difference}}} for the
    pairs whose two models were evaluated."""
    out = {}
    for a, b, label in PAIRS:
        if a not in evals or b not in evals:
            continue
        rows_a, rows_b = evals[a]["answers"]["per_question"], evals[b]["answers"]["per_question"]
        result = {"label": label, "minuend": a, "subtrahend": b}
        for group in ("overall",) + LABELS:
            keep = _keep(group)
            measures = {}
            for measure in MEASURES:
                sa, sb = (
                    _scores([r for r in rows_a if keep(r)], measure),
                    _scores([r for r in rows_b if keep(r)], measure),
                )
                common = sorted(sa.keys() & sb.keys())
                measures[measure] = uncertainty.paired_difference(
                    [sa[i] for i in common], [sb[i] for i in common], seed, samples
                )
            result[group] = measures
        out[f"{a}-{b}"] = result
    return out


def runs_of(evals: dict[str, dict], replicates: dict[str, dict], first_seed: int) -> dict[str, list[tuple[int, dict]]]:
    """Each evaluated model's training runs as (seed, evaluation), the first run (the shipped
    adapter, from `first_seed`) first; `replicates` are named <model>-seed<N> (qlora-seed1)."""
    runs = {name: [(first_seed, evaluation)] for name, evaluation in evals.items()}
    named = []
    for name, evaluation in replicates.items():
        model, _, seed = name.partition("-seed")
        if model not in runs or not seed.isdigit():
            raise ValueError(f"replicate evaluation {name!r} names no evaluated model and seed (<model>-seed<N>)")
        named.append((model, int(seed), evaluation))
    for model, seed, evaluation in sorted(named, key=lambda m: m[:2]):
        runs[model].append((seed, evaluation))
    return runs


def _run_scores(runs: list[tuple[int, dict]], group: str, measure: str) -> list[dict[str, float]]:
    """Per run, its scores by question id."""
    return [_scores([r for r in e["answers"]["per_question"] if _keep(group)(r)], measure) for _, e in runs]


def _aligned(per_run: list[dict[str, float]]) -> list[list[float]]:
    """The runs' scores on the questions every one of them answered, in one order."""
    ids = sorted(set.intersection(*(set(s) for s in per_run)))
    return [[s[i] for i in ids] for s in per_run]


def across_runs(
    evals: dict[str, dict],
    replicates: dict[str, dict],
    first_seed: int,
    seed: int = 0,
    samples: int = uncertainty.SAMPLES,
) -> dict | None:
    """Over training runs (None when no model has more than one): per model its seeds, and per
    support label the fact accuracy of each run, their mean, standard deviation and two-level
    interval; per pair of PAIRS the difference of the runs' means with its two-level interval."""
    runs = runs_of(evals, replicates, first_seed)
    if all(len(r) == 1 for r in runs.values()):
        return None
    models = {}
    for name, model_runs in runs.items():
        groups = {}
        for group in ("overall",) + LABELS:
            scores = _aligned(_run_scores(model_runs, group, "fact_correct"))
            means = [round(statistics.fmean(s), 4) if s else None for s in scores]
            groups[group] = {
                "fact_accuracy_runs": means,
                "fact_accuracy": round(statistics.fmean(v for s in scores for v in s), 4) if scores[0] else None,
                "fact_accuracy_sd": round(statistics.stdev(means), 4) if len(means) > 1 and scores[0] else None,
                "fact_accuracy_ci": uncertainty.runs_mean_ci(scores, seed, samples) if scores[0] else None,
            }
        models[name] = {"seeds": [s for s, _ in model_runs], **groups}
    pairs = {}
    for a, b, label in PAIRS:
        if a not in runs or b not in runs:
            continue
        result = {"label": label, "minuend": a, "subtrahend": b}
        for group in ("overall",) + LABELS:
            measures = {}
            for measure in MEASURES:
                per_run = _aligned(_run_scores(runs[a], group, measure) + _run_scores(runs[b], group, measure))
                measures[measure] = uncertainty.runs_difference(
                    per_run[: len(runs[a])], per_run[len(runs[a]) :], seed, samples
                )
            result[group] = measures
        pairs[f"{a}-{b}"] = result
    return {"models": models, "pairs": pairs}
