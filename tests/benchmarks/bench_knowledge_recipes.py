"""Which training recipe teaches the model the corpus's facts: fact accuracy on the test split's
seen_fact questions as training goes, for several recipes, on the pipeline's own splits and base.

    python tests/benchmarks/bench_knowledge_recipes.py --recipes RECIPES.json [--routes lora qlora] [--at 3 6 10] [--memory-gb 9]

Reads results/data/{train,valid,test}.jsonl, results/models/base and results/models/base-int4 (build
them first: `snakemake --cores 1 results/data/split_stats.json results/models/base-int4`, with the
--config of the real model). RECIPES.json is a list of {"name": ..., "training": {...}}, each
"training" a partial `training` config section as in config/config.yaml (for example
{"epochs": 20, "lora": {"rank": 16}}; tests/benchmarks/knowledge_seeds.json: config/knowledge.yaml's
recipe from five seeds, BENCHMARKS.md 7.4). For each recipe and route (lora: the unquantized base;
qlora: the int4 base) it trains with the pipeline's training code (farense.training.train, early
stopping as configured) and, at the epochs given by --at, answers the test questions greedily in
batches and scores them as the evaluation does (farense.evaluation.scored_row): fact accuracy on
seen facts, token F1, and the hallucination rate on unseen facts; also the validation loss there.
The answers come from the adapter of that moment, not from the one kept by validation loss.

Several processes can share one GPU (one recipe and route each): give each --memory-gb, or the
freed buffers one process keeps for reuse starve the others of memory.

Figures, not pass/fail: a recipe that the pipeline should use is then run through the whole
pipeline (bench_real_model.py) as a configuration of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from farense.fastblas import use_fast_blas  # noqa: E402

use_fast_blas()

import mlx.core as mx  # noqa: E402
import mlx_lm  # noqa: E402
import yaml  # noqa: E402
from mlx_lm.generate import batch_generate  # noqa: E402
from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset  # noqa: E402
from mlx_lm.tuner.trainer import evaluate  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402

from farense.chat_templates import ensure_chat_template  # noqa: E402
from farense.compute import prepare  # noqa: E402
from farense.evaluation import scored_row, test_questions  # noqa: E402
from farense.loss import chunked_loss  # noqa: E402
from farense.memory_presets import resolve_training  # noqa: E402
from farense.support import SEEN, UNSEEN  # noqa: E402
from farense.training import TrainOptions, lora_config, train  # noqa: E402


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def answers(model, tokenizer, questions: list[dict], max_new_tokens: int, batch: int = 32) -> list[str]:
    prompts = [tokenizer.apply_chat_template(q["prompt"]["messages"], add_generation_prompt=True) for q in questions]
    out = []
    for i in range(0, len(prompts), batch):
        out += [
            t.strip() for t in batch_generate(model, tokenizer, prompts[i : i + batch], max_tokens=max_new_tokens).texts
        ]
    return out


def training_questions(train_path: Path, limit: int = 64) -> list[dict]:
    """Question records of the training split that state checkable facts: answered rightly, they
    show the model holds what it trained on (memorisation), apart from answering other wordings."""
    out = []
    for line in train_path.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        meta = obj.get("meta", {})
        if meta.get("kind") in ("qa_curated", "qa_table") and meta.get("facts"):
            out.append(
                {
                    "id": meta["id"],
                    "kind": meta["kind"],
                    "support": "train",
                    "facts": meta["facts"],
                    "question": obj["messages"][-2]["content"],
                    "reference": obj["messages"][-1]["content"],
                    "prompt": {"messages": obj["messages"][:-1]},
                }
            )
    step = max(1, len(out) // limit)
    return out[::step][:limit]


def accuracy(rows: list[dict]) -> float | None:
    facts = [float(r["fact_correct"]) for r in rows if r["fact_correct"] is not None]
    return round(statistics.fmean(facts), 4) if facts else None


def score(questions: list[dict], texts: list[str]) -> tuple[dict, list[dict]]:
    rows = [scored_row(q, t) for q, t in zip(questions, texts)]
    seen = [r for r in rows if r["support"] == SEEN]
    unseen = [r for r in rows if r["support"] == UNSEEN]
    return {
        "seen_fact_accuracy": accuracy(seen),
        "seen_curated": accuracy([r for r in seen if r["kind"] == "qa_curated"]),
        "seen_table": accuracy([r for r in seen if r["kind"] == "qa_table"]),
        "train_questions": accuracy([r for r in rows if r["support"] == "train"]),
        "seen_f1": round(statistics.fmean(r["f1"] for r in seen), 4) if seen else None,
        "unseen_hallucination": round(statistics.fmean(float(r["asserts_specific"]) for r in unseen), 4)
        if unseen
        else None,
    }, rows


def run(
    recipe: dict,
    route: str,
    defaults: dict,
    at: list[float],
    max_new_tokens: int,
    answers_dir: Path | None,
    limit: int | None,
) -> list[dict]:
    data_dir = ROOT / recipe.get("data", "results/data")
    questions = (test_questions(data_dir / "test.jsonl", "chat") + training_questions(data_dir / "train.jsonl"))[:limit]
    settings = resolve_training(merged(defaults, recipe.get("training", {})), ROOT / "config/memory")
    options = TrainOptions.from_config(settings, ignore=("memory", "compute"))
    model_path = str(ROOT / "results/models" / ("base" if route == "lora" else "base-int4"))
    model, tokenizer = mlx_lm.load(model_path)
    ensure_chat_template(tokenizer, model.model_type)
    model, note = prepare(model, settings["compute"], training=True)
    train_set, valid_set, _ = load_local_dataset(
        data_dir, tokenizer, types.SimpleNamespace(mask_prompt=options.mask_prompt)
    )
    layers = len(model.layers) if options.num_layers == -1 else options.num_layers
    mx.random.seed(options.seed)
    model.freeze()
    linear_to_lora_layers(model, layers, lora_config(options, layers)["lora_parameters"])
    per_epoch = len(train_set) // options.batch_size
    marks = {max(1, int(round(e * per_epoch))): e for e in at}
    rows = []
    started = time.perf_counter()

    def progress(it, total, loss):
        if it not in marks and it != total:
            return
        model.eval()
        valid = evaluate(model, CacheDataset(valid_set), options.batch_size, -1, options.max_seq_length, chunked_loss)
        scores, answered = score(questions, answers(model, tokenizer, questions, max_new_tokens))
        model.train()
        if answers_dir is not None:
            answers_dir.mkdir(parents=True, exist_ok=True)
            (answers_dir / f"{recipe['name']}-{route}-{it}.json").write_text(
                json.dumps(answered, ensure_ascii=False, indent=1), encoding="utf-8"
            )
        row = {
            "recipe": recipe["name"],
            "route": route,
            "epoch": round(it / per_epoch, 2),
            "iteration": it,
            "train_loss": round(loss, 4),
            "valid_loss": round(valid, 4),
            **scores,
            "seconds": round(time.perf_counter() - started, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        state, measured = train(
            model,
            CacheDataset(train_set),
            CacheDataset(valid_set),
            options,
            Path(tmp) / "out",
            Path(tmp) / "ckpt",
            "sweep",
            progress,
        )
    print(
        json.dumps(
            {
                "recipe": recipe["name"],
                "route": route,
                "compute": note,
                "iterations": state.iteration,
                "best_step": state.best_step,
                "best_val_loss": round(state.best_val_loss, 4),
                "stopped_early": state.stopped_early,
                "tokens_per_second": measured.tokens_per_second,
            }
        ),
        flush=True,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=Path, required=True)
    parser.add_argument("--routes", nargs="+", default=["lora"], choices=["lora", "qlora"])
    parser.add_argument(
        "--at", nargs="+", type=float, default=[3, 6, 10, 15, 20], help="epochs at which to answer the test questions"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--limit", type=int, help="answer only the first N questions (a quick try)")
    parser.add_argument(
        "--answers", type=Path, help="write every answer, scored, here (one JSON file per recipe, route and moment)"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        help="cap this process's GPU memory and its cache of freed buffers (MLX keeps freed memory up to "
        "the device's limit, so ten sweeps side by side on one H200 ran out of memory at 24 GB in use)",
    )
    args = parser.parse_args()
    if args.memory_gb:
        mx.set_memory_limit(int(args.memory_gb * 2**30))
        mx.set_cache_limit(int(args.memory_gb * 2**30 / 4))
    defaults = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))["training"]
    print(f"device {mx.default_device()}", flush=True)
    rows = []
    for recipe in json.loads(args.recipes.read_text(encoding="utf-8")):
        for route in recipe.get("routes", args.routes):
            rows += run(recipe, route, defaults, args.at, args.max_new_tokens, args.answers, args.limit)
    columns = (
        "epoch",
        "train_loss",
        "valid_loss",
        "seen_fact_accuracy",
        "seen_curated",
        "seen_table",
        "train_questions",
        "seen_f1",
        "unseen_hallucination",
        "seconds",
    )
    print(f"\n{'recipe':<22} {'route':<6} " + " ".join(f"{c[:10]:>10}" for c in columns))
    for r in rows:
        print(f"{r['recipe']:<22} {r['route']:<6} " + " ".join(f"{r[c]!s:>10}" for c in columns))


if __name__ == "__main__":
    main()
