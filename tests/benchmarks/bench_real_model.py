"""The whole pipeline on a real base model, and the figures it measured.

    python tests/benchmarks/bench_real_model.py [--cores 4] [--config 'model={"base": "gemma3-270m"}'] [--workdir DIR]

Runs `snakemake --cores N results/report.html` (in DIR, default the repository itself) with the
given --config, then prints from what the stages wrote: each job's wall time and peak memory
(results/benchmarks/*.tsv), the base model chosen and its import, each adapter's training
tokens/s, peak memory and steps (training_summary.json), test loss and perplexity, exact match
and token F1 for base, LoRA and QLoRA (results/eval/*.json), and a few sample answers.
Figures, not pass/fail: BENCHMARKS.md holds what it printed on the H200.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def job_times(results: Path) -> list[tuple[str, float, float]]:
    rows = []
    for tsv in sorted((results / "benchmarks").glob("*.tsv")):
        with open(tsv, encoding="utf-8") as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        rows.append((tsv.stem, float(row["s"]), float(row["max_rss"]) if row["max_rss"] not in ("", "NA") else float("nan")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--config", nargs="*", default=[], help="passed to snakemake --config")
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "results/report.html"]
    if args.config:
        command += ["--config", *args.config]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=args.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-6000:])
        raise SystemExit(f"snakemake failed after {wall:.0f} s")
    results = args.workdir / "results"
    print(f"snakemake: {wall:.1f} s wall, {os.cpu_count()} CPUs")

    base = load(results / "models/base/farense_base.json")
    spec = base.get("base", {})
    print(f"\nbase: {spec.get('name')} ({spec.get('kind')}){' - auto: ' + spec['auto'] if spec.get('auto') else ''}")
    if base.get("kind") == "gguf":
        print(f"  {base['name']} {base['architecture']}, {base['parameters']:,} parameters, tensors {base['tensor_types']}, "
              f"chat template: {base['chat_template']}")

    print(f"\n{'job':<22} {'seconds':>8} {'max RSS MB':>11}")
    for name, seconds, rss in job_times(results):
        print(f"{name:<22} {seconds:>8.1f} {rss:>11.0f}")

    print(f"\n{'adapter':<7} {'compute':<48} {'iters':>6} {'best':>5} {'tok/s':>7} {'train s':>8} {'peak GB':>8}")
    for name in ("qlora", "lora"):
        s = load(results / "adapters" / name / "training_summary.json")
        if s:
            print(f"{name:<7} {s['compute'][:48]:<48} {s['iterations']:>6} {s['best_step']:>5} {s['tokens_per_second']:>7} "
                  f"{s['train_seconds']:>8} {s['peak_memory_gb']:>8}")

    evals = {name: load(results / "eval" / f"{name}.json") for name in ("base", "lora", "qlora")}
    print(f"\n{'model':<6} {'test loss':>9} {'ppl':>8} {'EM':>6} {'F1':>6} {'questions':>9} {'gen tok/s':>9}")
    for name, e in evals.items():
        if e:
            a = e["answers"]
            print(f"{name:<6} {e['loss']['test']['loss']:>9.4f} {e['loss']['test']['perplexity']:>8.2f} {a['exact_match']:>6} "
                  f"{a['f1']:>6} {a['questions']:>9} {a['generation']['tokens_per_second']:>9}")

    print("\nsample answers")
    questions = evals["qlora"].get("answers", {}).get("per_question", [])[: args.samples]
    for i, q in enumerate(questions):
        print(f"Q: {q['question']}\n   reference: {q['reference']}")
        for name, e in evals.items():
            if e:
                print(f"   {name:<5}: {e['answers']['per_question'][i]['response']!r} (F1 {e['answers']['per_question'][i]['f1']})")


if __name__ == "__main__":
    main()
