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

Several processes can share one GPU (--processes N: one recipe and route each): give them
--memory-gb, or the freed buffers one process keeps for reuse starve the others of memory.
--runs reads the recipes as seeds of one recipe (BENCHMARKS.md 7.4, in one command):

    python tests/benchmarks/bench_knowledge_recipes.py --recipes tests/benchmarks/knowledge_seeds.json \
        --routes lora qlora --at 10 20 --processes 10 --memory-gb 9 --answers DIR --runs

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
        "--processes",
        type=int,
        default=1,
        help="train this many recipe-route pairs at once, each in a process of its own (one GPU holds ten of "
        "Gemma 3 270M; give --memory-gb too)",
    )
    parser.add_argument(
        "--runs",
        action="store_true",
        help="the recipes are runs of one recipe (seeds): also print, per route, each run's seen-fact accuracy at the "
        "last epoch of --at, their mean and the interval over questions and runs, and LoRA minus QLoRA over the runs "
        "(farense.uncertainty; needs --answers)",
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        help="cap this process's GPU memory and its cache of freed buffers (MLX keeps freed memory up to "
        "the device's limit, so ten sweeps side by side on one H200 ran out of memory at 24 GB in use)",
    )
    args = parser.parse_args()
    if args.runs and not args.answers:
        parser.error("--runs reads the answers: give --answers DIR")
    if args.memory_gb:
        mx.set_memory_limit(int(args.memory_gb * 2**30))
        mx.set_cache_limit(int(args.memory_gb * 2**30 / 4))
    defaults = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))["training"]
    print(f"device {mx.default_device()}", flush=True)
    jobs = [
        (recipe, route)
        for recipe in json.loads(args.recipes.read_text(encoding="utf-8"))
        for route in recipe.get("routes", args.routes)
    ]
    if args.processes > 1:
        rows = side_by_side(jobs, args)
    else:
        rows = []
        for recipe, route in jobs:
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
    if args.runs:
        over_runs(rows, args.answers)


def side_by_side(jobs: list[tuple[dict, str]], args) -> list[dict]:
    """Each recipe-route pair in a process of its own (this script, one recipe and route), at most
    --processes at once; their result rows, in the order of `jobs`."""
    import subprocess

    options = ["--at", *map(str, args.at), "--max-new-tokens", str(args.max_new_tokens)]
    options += ["--answers", str(args.answers)] if args.answers else []
    options += ["--limit", str(args.limit)] if args.limit else []
    options += ["--memory-gb", str(args.memory_gb)] if args.memory_gb else []
    with tempfile.TemporaryDirectory() as tmp:
        pending, running, rows = list(enumerate(jobs)), [], {}
        while pending or running:
            while pending and len(running) < args.processes:
                i, (recipe, route) = pending.pop(0)
                path = Path(tmp) / f"{i}.json"
                path.write_text(json.dumps([{**recipe, "routes": [route]}]), encoding="utf-8")
                log = open(Path(tmp) / f"{i}.log", "w+", encoding="utf-8")
                command = [sys.executable, __file__, "--recipes", str(path), *options]
                running.append((i, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
            time.sleep(1)
            for i, proc, log in [r for r in running if r[1].poll() is not None]:
                running.remove((i, proc, log))
                log.seek(0)
                text = log.read()
                if proc.returncode:
                    print(f"{jobs[i][0]['name']} ({jobs[i][1]}) failed:\n{text[-3000:]}", flush=True)
                rows[i] = [
                    json.loads(line) for line in text.splitlines() if line.startswith('{"recipe"') and '"epoch"' in line
                ]
                for row in rows[i]:
                    print(json.dumps(row), flush=True)
    return [row for i in sorted(rows) for row in rows[i]]


def over_runs(rows: list[dict], answers_dir: Path) -> None:
    """The recipes as runs of one recipe: per route, seen-fact accuracy of each run at its last
    answered moment, their mean and two-level interval, and LoRA minus QLoRA over the runs, as
    the pipeline's comparison computes them (farense.comparison.across_runs)."""
    from farense.comparison import across_runs

    last = {}
    for r in rows:  # the last moment each recipe and route answered
        last[(r["recipe"], r["route"])] = r["iteration"]
    evals, replicates = {}, {}
    for (recipe, route), iteration in last.items():
        answered = json.loads((answers_dir / f"{recipe}-{route}-{iteration}.json").read_text(encoding="utf-8"))
        run = {"answers": {"per_question": [a for a in answered if a.get("support") in (SEEN, UNSEEN)]}}
        if route in evals:
            replicates[f"{route}-seed{len(replicates) + 1}"] = run  # a run's number, not its training seed
        else:
            evals[route] = run
    result = across_runs(evals, replicates, first_seed=0) or {"models": {}, "pairs": {}}
    print(
        "\nover the runs: seen-fact accuracy of each run, mean, standard deviation, 95% interval (questions and runs)"
    )
    for route, model in result["models"].items():
        seen = model[SEEN]
        print(
            f"  {route:<6} {seen['fact_accuracy_runs']} mean {seen['fact_accuracy']} sd {seen['fact_accuracy_sd']} "
            f"{seen['fact_accuracy_ci']}"
        )
    lq = result["pairs"].get("lora-qlora", {}).get(SEEN, {}).get("fact_correct")
    if lq:
        print(f"  LoRA minus QLoRA over the runs: {lq}")


if __name__ == "__main__":
    main()
