"""A model card for an adapter: what it is, how it was made and what it measured, in the Hugging
Face model-card convention (a README.md with YAML front matter), so that an adapter that leaves
the machine carries its figures, its recipe and the sha256 of what it was made from."""

from __future__ import annotations

import json

from .support import LABELS

TITLES = {"qlora": "QLoRA adapter on the int4 base", "lora": "LoRA adapter on the unquantized base"}


def _interval(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"


def _value(x) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def front_matter(name: str, base_model: str, evaluation: dict) -> str:
    """YAML front matter: base_model, library_name, tags, language, metrics and a model-index
    with the measured figures (JSON is YAML, so values are written as JSON)."""
    seen = evaluation["answers"]["by_support"].get("seen_fact", {})
    results = [
        {"type": "fact_accuracy", "name": "fact accuracy, seen facts", "value": seen.get("fact_accuracy")},
        {"type": "f1", "name": "token F1, seen facts", "value": seen.get("f1")},
        {
            "type": "exact_match",
            "name": "exact match, all test questions",
            "value": evaluation["answers"].get("exact_match"),
        },
        {"type": "perplexity", "name": "test perplexity", "value": evaluation["loss"]["test"]["perplexity"]},
    ]
    meta = {
        "base_model": base_model,
        "library_name": "mlx",
        "tags": ["mlx", "lora", "qlora" if name == "qlora" else "peft", "farense", "football", "portuguese"],
        "language": ["pt"],
        "pipeline_tag": "text-generation",
        "metrics": ["fact_accuracy", "f1", "exact_match", "perplexity"],
        "model-index": [
            {
                "name": f"farense-{name}",
                "results": [
                    {
                        "task": {"type": "question-answering", "name": "Questions about SC Farense"},
                        "dataset": {"type": "farense-test", "name": "Farense test split (results/data/test.jsonl)"},
                        "metrics": [r for r in results if r["value"] is not None],
                    }
                ],
            }
        ],
    }
    lines = ["---"] + [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in meta.items()] + ["---"]
    return "\n".join(lines)


def card(
    name: str, base_model: str, evaluation: dict, comparison: dict, summary: dict, adapter_config: dict, hashes: dict
) -> str:
    answers = evaluation["answers"]
    lora = adapter_config["lora_parameters"]
    training = adapter_config["training"]
    out = [
        front_matter(name, base_model, evaluation),
        "",
        f"# Farense {TITLES.get(name, name)}",
        "",
        f"An adapter for `{base_model}` that answers questions about SC Farense, the football club of Faro, in European "
        "Portuguese. Made by the Farense QLoRA pipeline; every figure below was measured by the run that made it.",
        "",
        "## What it knows",
        "",
        "Test questions are labelled `seen_fact` (training stated the fact in other words) or `unseen_fact` (no training "
        "record states it). Fact accuracy is the share of questions whose every fact (numbers, dates, names, a match's result, "
        "score, venue and competition) the answer states rightly; intervals are 95% bootstrap intervals over the questions.",
        "",
        "| questions | n | fact accuracy | 95% interval | token F1 | 95% interval | hallucination rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in LABELS:
        s = answers["by_support"].get(label, {})
        out.append(
            f"| {label} | {s.get('questions', 0)} | {_value(s.get('fact_accuracy'))} | {_interval(s.get('fact_accuracy_ci'))} | "
            f"{_value(s.get('f1'))} | {_interval(s.get('f1_ci'))} | {_value(s.get('hallucination_rate')) if label == 'unseen_fact' else ''} |"
        )
    out += [
        "",
        f"Exact match over all {answers['questions']} test questions: {_value(answers['exact_match'])}. "
        f"Test loss {evaluation['loss']['test']['loss']:.4f}, perplexity {evaluation['loss']['test']['perplexity']:.2f}.",
        "",
    ]
    rows = []
    for key, pair in comparison.get("pairs", {}).items():
        if name in (pair["minuend"], pair["subtrahend"]):
            d = pair["seen_fact"]["fact_correct"]
            if d:
                rows.append(
                    f"| {pair['label']} | {d['difference']:+.3f} | {_interval(d['ci'])} | {'yes' if d['excludes_zero'] else 'no'} |"
                )
    if rows:
        out += (
            [
                "Paired differences in fact accuracy on seen facts (the same questions for both models):",
                "",
                "| difference | value | 95% interval | interval excludes 0 |",
                "|---|---|---|---|",
            ]
            + rows
            + [""]
        )
    runs = (comparison.get("runs") or {}).get("models", {}).get(name)
    if runs and len(runs["seeds"]) > 1:
        seen = runs["seen_fact"]
        out += [
            f"This adapter is the first of {len(runs['seeds'])} training runs of its recipe (seeds "
            f"{', '.join(map(str, runs['seeds']))}): their fact accuracy on seen facts was "
            f"{', '.join(_value(v) for v in seen['fact_accuracy_runs'])}, mean {_value(seen['fact_accuracy'])} "
            f"{_interval(seen['fact_accuracy_ci'])} (95% interval over the questions and the runs). The runs differ only "
            "in their seed: the figures above are one draw of that chance.",
            "",
        ]
    out += [
        "## How it was made",
        "",
        f"- rank {lora['rank']}, scale {lora['scale']} (alpha = scale x rank), dropout {lora['dropout']}, on "
        f"{', '.join(lora['keys'])} of {adapter_config['num_layers']} blocks",
        f"- learning rate {training['learning_rate']} ({training['warmup_steps']} warmup updates, {training['decay']} decay), "
        f"batch {training['batch_size']} x accumulation {training['grad_accumulation']}, sequences up to {training['max_seq_length']} tokens",
        f"- {summary['iterations']} iterations; kept the adapter of step {summary['kept_step']} ({summary['keep']}; best "
        f"validation loss {summary['best_val_loss']:.4f} at step {summary['best_step']}); "
        f"{summary['trainable_parameters']} trainable parameters",
        # no speed or memory here: a card is hashed like any artifact, and those differ from run
        # to run (they are in the training's run record, results/runs/, and the report)
        f"- computed as: {summary['compute']} on {summary['device']}",
        "",
        "## Made from (sha256)",
        "",
    ]
    out += [f"- `{path}`: `{digest}`" for path, digest in hashes.items()]
    out += [
        "",
        "## Use",
        "",
        "```",
        'mlx_lm.generate --model <the base above> --adapter-path <this folder> --prompt "Quem foi Hassan Nader?"',
        "```",
        "",
    ]
    return "\n".join(out)
