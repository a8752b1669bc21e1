"""Paired comparisons of the evaluated models on the same test questions.

What the user asks: does QLoRA know the facts as well as LoRA (lora - qlora), what does each
adapter add to the model it was trained on (qlora - base, lora - base_full), and what does int4
cost before any training (base_full - base)? Each difference comes with a paired bootstrap
interval (farense.uncertainty), overall and per support label.
"""

from __future__ import annotations

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
            keep = (lambda r: True) if group == "overall" else (lambda r, g=group: r["support"] == g)
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
