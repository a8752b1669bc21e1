"""Where a fresh machine's time goes: one evaluation (split losses, then generated answers) of a
model with MLX's kernel cache empty, then again with the cache it left.

    python tests/benchmarks/bench_cold_start.py --model results/models/base-int4 --data results/data

MLX's CUDA backend compiles each kernel it has not met with NVRTC the first time it meets it and
keeps the result in its PTX cache: `$MLX_PTX_CACHE_DIR`, by default `<tmp>/mlx/<version>/ptx`,
empty on a fresh machine (MLX's mlx/backend/cuda/jit_module.cpp). Each run here is a new process
with MLX_PTX_CACHE_DIR pointing at a folder of its own: "cold" starts it empty, as a fresh
machine does; "warm" reuses what cold left, as a second build on the same machine does. For each
part the seconds and the number of kernel modules compiled are printed, and the modules grouped by
kind (the name up to its first shape or type suffix), so that what is compiled per shape shows.
On a CPU or a Mac no PTX is made: the figures are then the plain times.

The evaluation is the pipeline's own (farense.evaluation: split_losses on the test split, then
answer_quality on its questions), with the settings of the configuration files given (--configfile,
default config/config.yaml), computing as the evaluate rule does (farense.compute.prepare).
Not part of the test suite: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules(cache: Path) -> set[str]:
    return {p.stem for p in cache.glob("*.ptx")} if cache.exists() else set()


def kind(name: str) -> str:
    """A module's kind: its name cut at the first part that looks like a shape, size or dtype."""
    return re.split(r"_(?=\d|float|bfloat|int|uint|bool|complex|large|small)", name, maxsplit=1)[0]


def child(args) -> None:
    """One evaluation in this process (MLX_PTX_CACHE_DIR set by the parent); JSON on stdout."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from farense.preload import blas  # noqa: F401 (first: the BLAS before mlx)

    import mlx.core as mx
    import yaml

    from farense.compute import prepare
    from farense.evaluation import EvalOptions, answer_quality, split_losses, test_questions
    from farense.inference import load
    from farense.memory_presets import resolve_training

    config: dict = {}
    for path in args.configfile:
        for section, values in (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).items():
            config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    # the training settings as the workflow resolves them (the memory preset's batch size, ...)
    training, evaluation = resolve_training(config["training"], ROOT / "config" / "memory"), dict(config["evaluation"])
    if args.questions:
        evaluation["max_questions"] = args.questions
    options = EvalOptions.from_config(evaluation, ignore=("samples_in_report", "runtime"))
    cache = Path(os.environ["MLX_PTX_CACHE_DIR"])
    data_format = config["split"]["format"]
    schema = ROOT / "config" / "schemas" / f"jsonl_{data_format}.schema.yaml"
    parts, seen = {}, modules(cache)

    def part(name, started):
        nonlocal seen
        now = modules(cache)
        parts[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "modules": len(now - seen),
            "kinds": dict(Counter(kind(m) for m in now - seen).most_common()),
        }
        seen = now

    started = time.perf_counter()
    loaded = load(args.model, None)
    loaded.model, note = prepare(loaded.model, training["compute"], training=False)
    mx.eval(loaded.model.parameters())
    part("load", started)
    started = time.perf_counter()
    split_losses(
        loaded.model,
        loaded.tokenizer,
        Path(args.data),
        data_format,
        training["batch_size"],
        training["max_seq_length"],
        training["mask_prompt"],
        options.loss_batches,
        ("test",),
        options.seed,
        schema,
    )
    part("test loss", started)
    started = time.perf_counter()
    questions = test_questions(Path(args.data) / "test.jsonl", data_format, schema)
    quality, speed = answer_quality(loaded.model, loaded.tokenizer, questions, options)
    part("answers", started)
    print(
        "RESULT "
        + json.dumps(
            {
                "compute": note,
                "device": str(mx.default_device()),
                "questions": quality["questions"],
                "generated_tokens": quality["generation"]["generated_tokens"],
                "parts": parts,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (e.g. results/models/base-int4)")
    parser.add_argument("--data", required=True, help="the split folder (results/data)")
    parser.add_argument("--configfile", nargs="+", default=[str(ROOT / "config" / "config.yaml")])
    parser.add_argument(
        "--questions", type=int, default=0, help="evaluate at most this many questions (0: as configured)"
    )
    parser.add_argument("--cache", type=Path, help="the PTX cache folder to start from (default: a new empty one)")
    parser.add_argument("--runs", nargs="+", default=["cold", "warm"], choices=("cold", "warm"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="mlx-ptx-"))
    for run in args.runs:
        if run == "cold":
            for f in cache.glob("*"):
                f.unlink()
        command = [
            sys.executable,
            __file__,
            "--child",
            "--model",
            args.model,
            "--data",
            args.data,
            "--configfile",
            *args.configfile,
        ]
        if args.questions:
            command += ["--questions", str(args.questions)]
        started = time.perf_counter()
        done = subprocess.run(
            command, env={**os.environ, "MLX_PTX_CACHE_DIR": str(cache)}, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(f"{run}: failed (exit {done.returncode}):\n{done.stderr[-3000:]}", flush=True)
            continue
        result = json.loads(line[len("RESULT ") :])
        print(
            f"{run}: {wall:.1f} s in all (process start included); {result['compute']} on {result['device']}; "
            f"{result['questions']} questions, {result['generated_tokens']} tokens; PTX cache {cache}",
            flush=True,
        )
        for name, part in result["parts"].items():
            kinds = ", ".join(f"{k} {n}" for k, n in list(part["kinds"].items())[:8])
            print(f"  {name:<10} {part['seconds']:8.2f} s  {part['modules']:4d} modules compiled  {kinds}", flush=True)
        print("JSON " + json.dumps({"run": run, "wall_s": round(wall, 2), **result}), flush=True)


if __name__ == "__main__":
    main()
