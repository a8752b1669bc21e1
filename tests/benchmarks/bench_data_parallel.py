"""Data-parallel training (training.processes) against one process: tokens/s, wall time and
whether the adapter is the same.

    python tests/benchmarks/bench_data_parallel.py [--processes 1 2] [--configfile FILE] [--config KEY=VALUE...] [--keep DIR]

Copies the workflow into a scratch folder (or DIR), builds the QLoRA adapter's inputs once, then
for each number of processes deletes the adapter and its checkpoints and runs
`snakemake --cores N results/adapters/qlora --config 'training={"processes": N}'`. Prints, from
each run record (results/runs/train_qlora.json): training tokens/s over all ranks, seconds in
the training step and wall seconds of the job, and the largest absolute difference of each
adapter from the first one's. Figures, not pass/fail; on a machine with fewer cores than ranks
the ranks share them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("Snakefile", "rules", "scripts", "config", "resources", "environment.yml")


def snakemake(wf: Path, cores: int, *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), *args], cwd=wf, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--configfile", help="laid over config/config.yaml")
    parser.add_argument("--config", nargs="*", default=[], help="more snakemake --config values (not training)")
    parser.add_argument("--keep", type=Path, help="work here and keep it")
    args = parser.parse_args()
    import mlx.core as mx

    wf = args.keep or Path(tempfile.mkdtemp(prefix="farense-dp-"))
    wf.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        if not (wf / part).exists():
            (shutil.copytree if (ROOT / part).is_dir() else shutil.copy2)(ROOT / part, wf / part)
    base = ["--configfile", "config/config.yaml", args.configfile] if args.configfile else []
    print(f"workflow copy: {wf}")
    prepared = snakemake(
        wf,
        max(args.processes),
        "results/models/base-int4",
        "results/data/train.jsonl",
        *base,
        *(["--config", *args.config] if args.config else []),
    )
    print(f"inputs built in {prepared:.1f} s")
    first, rows = None, []
    for n in args.processes:
        shutil.rmtree(wf / "results/adapters/qlora", ignore_errors=True)
        shutil.rmtree(wf / "results/checkpoints/qlora", ignore_errors=True)
        wall = snakemake(
            wf,
            n,
            "results/adapters/qlora",
            "--forcerun",
            "train_qlora",
            *base,
            "--config",
            *args.config,
            f'training={{"processes": {n}}}',
        )
        run = json.loads((wf / "results/runs/train_qlora.json").read_text())
        adapter = mx.load(str(wf / "results/adapters/qlora/adapters.safetensors"))
        first = first or adapter
        diff = max(float(mx.abs(adapter[k] - first[k]).max()) for k in first)
        rows.append((n, run["tokens_per_second"], run["train_seconds"], run["wall_seconds"], wall, diff))
    print(
        f"\n{'processes':>9} {'tokens/s':>9} {'step s':>8} {'job wall s':>10} {'snakemake s':>11} {'max |diff| vs first':>20}"
    )
    for n, tps, step, job, wall, diff in rows:
        print(f"{n:>9} {tps:>9} {step:>8} {job:>10} {wall:>11.1f} {diff:>20.3g}")
    if not args.keep:
        shutil.rmtree(wf)


if __name__ == "__main__":
    main()
