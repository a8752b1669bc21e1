"""Evaluation of one model (the int4 base alone, or a base with an adapter) on the test split.

- Loss and perplexity: mlx-lm's own `evaluate` over mlx-lm's own dataset classes, with the batch
  size, sequence length and prompt masking of training, and training's loss (farense.loss): the
  figure `mlx_lm lora --test` prints.
- Answer quality: greedy answers to the test split's questions, scored by the facts their
  reference states (farense.facts: fact accuracy, the share of questions whose facts are all
  stated rightly), exact match and token F1 (farense.metrics), per question, per kind and per
  support label (seen_fact / unseen_fact, farense.support), with seeded bootstrap intervals
  (farense.uncertainty); on unseen facts, how often a model still asserts a specific answer.
- Generation cost: generated tokens/s with the answers generated in batches, after one warm-up
  answer (the first call compiles kernels and pages weights in). Returned apart from the scores:
  it differs from run to run and goes to the job's run record (farense.run_record), not to
  results/eval/.
- Overfitting: validation minus training loss at the validation steps of training (metrics.csv),
  and the same two losses measured on the whole splits with the adapter that was kept.
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from . import facts as factlib
from . import uncertainty
from .errors import PipelineError
from .metrics import exact_match, perplexity, token_f1
from .options import from_config
from .split_lines import mlx_dataset, read_split
from .support import LABELS, UNSEEN

QUESTION_KINDS = ("qa_curated", "qa_table")


@dataclass(frozen=True)
class EvalOptions:
    max_new_tokens: int = 48
    batch_size: int = 16
    max_questions: int = -1
    loss_batches: int = -1
    train_split_loss: bool = True
    bootstrap_samples: int = uncertainty.SAMPLES
    seed: int = 0

    from_config = classmethod(from_config)


def test_questions(test_path: Path, data_format: str, schema_path: Path | None = None) -> list[dict]:
    """The question/answer records of the test split, as prompt and reference answer (every
    line checked against the JSONL schema `schema_path` first: farense.split_lines)."""
    questions = []
    for line_no, obj in enumerate(read_split(test_path, schema_path), 1):
        meta = obj.get("meta", {})
        if meta.get("kind") not in QUESTION_KINDS:
            continue
        if data_format == "chat":
            messages = obj["messages"]
            if messages[-1]["role"] != "assistant":
                raise PipelineError(f"{test_path}, line {line_no}: the last message is not the assistant's answer")
            prompt, reference = {"messages": messages[:-1]}, messages[-1]["content"]
            question = messages[-2]["content"]
        elif data_format == "completions":
            prompt, reference, question = (
                {"messages": [{"role": "user", "content": obj["prompt"]}]},
                obj["completion"],
                obj["prompt"],
            )
        else:  # text: "Pergunta: ...\nResposta: ..."
            head, sep, reference = obj["text"].partition("\nResposta:")
            if not sep:
                continue
            question = head.removeprefix("Pergunta:").strip()
            prompt, reference = {"text": head + sep}, reference.strip()
        if meta.get("support") not in LABELS:
            raise PipelineError(
                f"{test_path}, line {line_no}: test question without a support label (meta.support): rebuild the splits"
            )
        questions.append(
            {
                "id": meta.get("id", f"line{line_no}"),
                "kind": meta["kind"],
                "support": meta["support"],
                "facts": meta.get("facts", []),
                "question": question,
                "reference": reference,
                "prompt": prompt,
            }
        )
    return questions


def split_losses(
    model,
    tokenizer,
    data_dir: Path,
    data_format: str,
    batch_size: int,
    max_seq_length: int,
    mask_prompt: bool,
    loss_batches: int,
    splits: tuple[str, ...],
    seed: int = 0,
    schema_path: Path | None = None,
) -> tuple[dict, dict]:
    """Mean token loss and perplexity per split, computed as `mlx_lm lora --test` computes them.

    mlx-lm's evaluate visits the batches in an order drawn from numpy's global generator, so a
    partial loss (`loss_batches`) takes a random subset: seeded here as `mlx_lm lora --seed`
    seeds it (default 0), so that reruns agree and `--test-batches N` gives the same figure.
    Returns the losses and the seconds each split took. The splits' lines are checked against
    the JSONL schema `schema_path` (farense.split_lines), then read by mlx-lm's own dataset
    classes, as its load_local_dataset reads them."""
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import evaluate

    from .loss import chunked_loss

    mask = mask_prompt and data_format != "text"
    out, seconds = {}, {}
    for name in splits:
        dataset = mlx_dataset(Path(data_dir) / f"{name}.jsonl", schema_path, tokenizer, mask)
        if len(dataset) < batch_size:
            raise PipelineError(
                f"the {name} split has {len(dataset)} example(s), fewer than the batch size ({batch_size})"
            )
        start = time.perf_counter()
        np.random.seed(seed)
        loss = evaluate(model, CacheDataset(dataset), batch_size, loss_batches, max_seq_length, loss=chunked_loss)
        batches = len(dataset) // batch_size if loss_batches == -1 else min(loss_batches, len(dataset) // batch_size)
        out[name] = {
            "loss": round(loss, 6),
            "perplexity": round(perplexity(loss), 4),
            "examples": batches * batch_size,
            "batches": batches,
        }
        seconds[name] = round(time.perf_counter() - start, 3)
    return out, seconds


def _prompt_tokens(tokenizer, prompt: dict) -> list[int]:
    if "messages" in prompt:
        return tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True)
    return tokenizer.encode(prompt["text"])


def generate_answers(
    model, tokenizer, prompts: list[dict], max_new_tokens: int, batch_size: int
) -> tuple[list[dict], float]:
    """Greedy answers to the prompts, `batch_size` at a time (mlx-lm's batch_generate: the same
    answers as one at a time, in a fraction of the time: 8 Gemma 3 270M answers on 2 CPU cores,
    97 s one by one, 29 s as one batch, identical text); returns the answers and the seconds."""
    from mlx_lm.generate import batch_generate

    tokens = [_prompt_tokens(tokenizer, p) for p in prompts]
    start = time.perf_counter()
    out = []
    for i in range(0, len(tokens), batch_size):
        part = tokens[i : i + batch_size]
        response = batch_generate(model, tokenizer, part, max_tokens=max_new_tokens, return_token_ids=True)
        for prompt, text, ids in zip(part, response.texts, response.token_ids):
            out.append({"response": text.strip(), "prompt_tokens": len(prompt), "generated_tokens": len(ids)})
    return out, time.perf_counter() - start


def score_answer(question: dict, response: str) -> dict:
    """One answer's scores: each reference fact checked, all right or not (None without facts),
    exact match, token F1, and whether it asserts a specific fact at all."""
    checked = factlib.check(question["facts"], response)
    return {
        "facts": checked,
        "fact_correct": all(f["stated"] for f in checked) if checked else None,
        "exact_match": exact_match(response, question["reference"]),
        "f1": round(token_f1(response, question["reference"]), 4),
        "asserts_specific": factlib.asserts_specific(response, question["question"]),
    }


def summarize(rows: list[dict], options: EvalOptions, label: str = "") -> dict:
    """Scores of a set of answered questions, with bootstrap intervals."""
    ci = {"seed": options.seed, "samples": options.bootstrap_samples}
    with_facts = [float(r["fact_correct"]) for r in rows if r["fact_correct"] is not None]
    # the share of its reference facts each answer states rightly: partial knowledge that
    # fact_accuracy (all or nothing) does not show (on the H200, Gemma 3 270M LoRA got 0.046 of
    # seen questions wholly right but 0.357 of their single facts, BENCHMARKS.md 7.1)
    shares = [sum(f["stated"] for f in r["facts"]) / len(r["facts"]) for r in rows if r["facts"]]
    out = {
        "questions": len(rows),
        "questions_with_facts": len(with_facts),
        "fact_accuracy": round(statistics.fmean(with_facts), 4) if with_facts else None,
        "fact_accuracy_ci": uncertainty.mean_ci(with_facts, **ci),
        "facts_right": round(statistics.fmean(shares), 4) if shares else None,
        "facts_right_ci": uncertainty.mean_ci(shares, **ci),
        "exact_match": round(statistics.fmean(r["exact_match"] for r in rows), 4) if rows else None,
        "exact_match_ci": uncertainty.mean_ci([r["exact_match"] for r in rows], **ci),
        "f1": round(statistics.fmean(r["f1"] for r in rows), 4) if rows else None,
        "f1_ci": uncertainty.mean_ci([r["f1"] for r in rows], **ci),
    }
    if label == UNSEEN:
        asserted = [float(r["asserts_specific"]) for r in rows]
        out["hallucination_rate"] = round(statistics.fmean(asserted), 4) if asserted else None
        out["hallucination_rate_ci"] = uncertainty.mean_ci(asserted, **ci)
    return out


def scored_row(question: dict, response: str) -> dict:
    """A test question's row of the evaluation: what it is, the answer, and its scores."""
    keys = ("id", "kind", "support", "question", "reference")
    return {**{k: question[k] for k in keys}, "response": response, **score_answer(question, response)}


def answer_quality(model, tokenizer, questions: list[dict], options: EvalOptions) -> tuple[dict, dict]:
    """Greedy answers and their scores; and apart, the generation speed (overall and per question)."""
    chosen = questions if options.max_questions == -1 else questions[: options.max_questions]
    if chosen:  # warm-up, not timed: the first call compiles kernels and pages weights in
        generate_answers(model, tokenizer, [chosen[0]["prompt"]], min(4, options.max_new_tokens), 1)
    results, seconds = generate_answers(
        model, tokenizer, [q["prompt"] for q in chosen], options.max_new_tokens, options.batch_size
    )
    rows = [
        {**scored_row(q, r["response"]), "generated_tokens": r["generated_tokens"]} for q, r in zip(chosen, results)
    ]
    generated = sum(r["generated_tokens"] for r in rows)
    overall = summarize(rows, options)
    speed = {
        "tokens_per_second": round(generated / seconds, 1) if seconds else None,
        "seconds": round(seconds, 3),
        "batch_size": options.batch_size,
    }
    quality = {
        **overall,
        "questions_available": len(questions),
        "by_kind": {
            kind: summarize([r for r in rows if r["kind"] == kind], options)
            for kind in sorted({r["kind"] for r in rows})
        },
        "by_support": {
            label: summarize([r for r in rows if r["support"] == label], options, label) for label in LABELS
        },
        "bootstrap": {"samples": options.bootstrap_samples, "seed": options.seed, "level": uncertainty.LEVEL},
        "generation": {
            "generated_tokens": generated,
            "batch_size": options.batch_size,
            "max_new_tokens": options.max_new_tokens,
        },
        "per_question": rows,
    }
    return quality, speed


def overfitting_from_metrics(metrics_csv: Path) -> dict:
    """Validation minus training loss at the steps where both were logged, and at the best step.

    The training loss of a row is the mean over the iterations since the previous row."""
    rows = []
    with open(metrics_csv, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["train_loss"] and row["val_loss"]:
                train, val = float(row["train_loss"]), float(row["val_loss"])
                rows.append(
                    {
                        "step": int(float(row["step"])),
                        "train_loss": train,
                        "val_loss": val,
                        "gap": round(val - train, 6),
                    }
                )
    return {"per_step": rows}
