"""Benchmark of the default training on a CPU: MLX's reference BLAS against OpenBLAS.

    python tests/benchmarks/bench_cpu_training.py [--repeats 2] [--settings reference default]

Copies the workflow to a temporary folder, builds the data and both base models once, then for
each BLAS setting and repeat deletes the adapters and their checkpoints (so nothing is resumed)
and runs `snakemake --cores 1 results/adapters/qlora results/adapters/lora` with
FARENSE_BLAS=reference (MLX's own BLAS) or FARENSE_BLAS unset (the default: OpenBLAS when
libopenblas0-pthread is installed). Prints each adapter's tokens/s, training seconds and peak
memory from the run records (results/runs/train_*.json), the BLAS and compute the run recorded, the
wall time of the Snakemake command, and the ratio of the medians. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline_overhead import workspace  # noqa: E402

ADAPTERS = ("qlora", "lora")


def run(workdir: Path, env: dict, *targets: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *targets],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(targets)} failed:\n{proc.stdout[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--settings", nargs="+", default=["reference", "default"], help="FARENSE_BLAS values ('default': unset)"
    )
    parser.add_argument("--keep", type=Path, help="build (or reuse) the copy here")
    args = parser.parse_args()
    with workspace(args.keep, "farense-cpu-") as wf:
        base_env = {k: v for k, v in os.environ.items() if k != "FARENSE_BLAS"}
        seconds = run(
            wf,
            base_env,
            "results/models/base-int4",
            "results/models/base",
            "results/data/train.jsonl",
            "results/data/valid.jsonl",
        )
        print(
            f"data and models built in {seconds:.0f} s; {os.cpu_count()} CPU(s), load average before: {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        print(
            f"{'BLAS setting':<10} {'run':>3} {'adapter':<6} {'tok/s':>7} {'train s':>8} {'peak GB':>7} {'snakemake s':>11}  compute / BLAS recorded"
        )
        found: dict[tuple[str, str], list[float]] = {}
        for setting in args.settings:
            env = dict(base_env, **({"FARENSE_BLAS": setting} if setting != "default" else {}))
            for repeat in range(1, args.repeats + 1):
                for name in ADAPTERS:
                    shutil.rmtree(wf / "results/adapters" / name, ignore_errors=True)
                    shutil.rmtree(wf / "results/checkpoints" / name, ignore_errors=True)
                seconds = run(wf, env, *(f"results/adapters/{name}" for name in ADAPTERS))
                for name in ADAPTERS:
                    summary = json.loads((wf / "results/adapters" / name / "training_summary.json").read_text())
                    run_record = json.loads((wf / "results/runs" / f"train_{name}.json").read_text())
                    found.setdefault((setting, name), []).append(run_record["tokens_per_second"])
                    print(
                        f"{setting:<10} {repeat:>3} {name:<6} {run_record['tokens_per_second']:7.0f} {run_record['train_seconds']:8.1f} "
                        f"{run_record['peak_memory_gb']:7.3f} {seconds:11.1f}  {summary['compute']} / {run_record['blas']}",
                        flush=True,
                    )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if len(args.settings) == 2:
            a, b = args.settings
            for name in ADAPTERS:
                ratio = statistics.median(found[(b, name)]) / statistics.median(found[(a, name)])
                print(f"{name}: median tokens/s {b} / {a} = {ratio:.2f}x")


if __name__ == "__main__":
    main()
