"""The whole pipeline on a real base model, and the figures it measured.

    python tests/benchmarks/bench_real_model.py [--cores 4] [--configfile config/knowledge.yaml] [--config 'model={"base": "gemma3-270m"}'] [--workdir DIR]

Runs `snakemake --cores N results/report.html` (in DIR, default the repository itself) with the
given --config, then prints from what the stages wrote: each job's wall time and peak memory
(results/benchmarks/*.tsv), the base model chosen and its import, each adapter's training
tokens/s, peak memory (results/runs/train_*.json) and steps (training_summary.json), test loss and perplexity, fact accuracy
with its interval, token F1 and the hallucination rate per support label for the int4 base, the
unquantized base, LoRA and QLoRA (results/eval/*.json), the paired differences
(results/eval/comparison.json; over the training runs too, with training.replicates), and a few sample answers of each label. --out DIR copies the
evaluations, model cards, report and split statistics there.
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
        rows.append(
            (tsv.stem, float(row["s"]), float(row["max_rss"]) if row["max_rss"] not in ("", "NA") else float("nan"))
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--config", nargs="*", default=[], help="passed to snakemake --config")
    parser.add_argument(
        "--configfile", help="a configuration file laid over config/config.yaml (snakemake --configfile)"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=Path, help="copy the evaluations, cards, report and split statistics here")
    args = parser.parse_args()
    command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "results/report.html"]
    if args.configfile:
        command += ["--configfile", "config/config.yaml", args.configfile]
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
        print(
            f"  {base['name']} {base['architecture']}, {base['parameters']:,} parameters, tensors {base['tensor_types']}, "
            f"chat template: {base['chat_template']}"
        )

    print(f"\n{'job':<22} {'seconds':>8} {'max RSS MB':>11}")
    for name, seconds, rss in job_times(results):
        print(f"{name:<22} {seconds:>8.1f} {rss:>11.0f}")

    print(f"\n{'adapter':<7} {'compute':<48} {'iters':>6} {'kept':>5} {'tok/s':>7} {'train s':>8} {'peak GB':>8}")
    for name in ("qlora", "lora"):
        s, r = (
            load(results / "adapters" / name / "training_summary.json"),
            load(results / "runs" / f"train_{name}.json"),
        )
        if s:
            print(
                f"{name:<7} {s['compute'][:48]:<48} {s['iterations']:>6} {s['kept_step']:>5} {r.get('tokens_per_second')!s:>7} "
                f"{r.get('train_seconds')!s:>8} {r.get('peak_memory_gb')!s:>8}"
            )

    split = load(results / "data/split_stats.json")
    print(f"\ntest questions: {split.get('test_questions', {}).get('by_kind_and_support')}")
    evals = {name: load(results / "eval" / f"{name}.json") for name in ("base", "base_full", "lora", "qlora")}
    print(f"\n{'model':<9} {'test loss':>9} {'ppl':>8} {'EM':>6} {'F1':>6} {'questions':>9} {'gen tok/s':>9}")
    for name, e in evals.items():
        if e:
            a = e["answers"]
            print(
                f"{name:<9} {e['loss']['test']['loss']:>9.4f} {e['loss']['test']['perplexity']:>8.2f} {a['exact_match']:>6} "
                f"{a['f1']:>6} {a['questions']:>9} {load(results / 'runs' / f'evaluate_{name}.json').get('generation', {}).get('tokens_per_second')!s:>9}"
            )
    print(
        f"\n{'model':<9} {'label':<12} {'n':>4} {'fact acc':>8} {'95% interval':>16} {'F1':>6} {'95% interval':>16} {'halluc.':>8}"
    )
    for name, e in evals.items():
        for label, b in (e or {}).get("answers", {}).get("by_support", {}).items():
            print(
                f"{name:<9} {label:<12} {b['questions']:>4} {b['fact_accuracy']!s:>8} {b['fact_accuracy_ci']!s:>16} {b['f1']!s:>6} "
                f"{b['f1_ci']!s:>16} {b.get('hallucination_rate', '')!s:>8}"
            )
    comparison = load(results / "eval/comparison.json")

    def differences(pairs: dict, title: str) -> None:
        print(f"\n{title} (fact accuracy | F1), seen facts")
        for pair in pairs.values():
            fa, f1 = pair["seen_fact"]["fact_correct"], pair["seen_fact"]["f1"]
            print(
                f"  {pair['label']:<48} {fa and fa['difference']!s:>7} {fa and fa['ci']!s:>18} | {f1 and f1['difference']!s:>7} {f1 and f1['ci']!s:>18}"
            )

    differences(comparison.get("pairs", {}), "paired differences, first runs")
    runs = comparison.get("runs")
    if runs:  # training.replicates
        print("\ntraining runs: fact accuracy on seen facts per run, mean, sd, interval over questions and runs")
        for name, model in runs["models"].items():
            seen = model["seen_fact"]
            print(
                f"  {name:<9} seeds {model['seeds']!s:<12} {seen['fact_accuracy_runs']!s:<36} {seen['fact_accuracy']!s:>7} "
                f"{seen['fact_accuracy_sd']!s:>7} {seen['fact_accuracy_ci']!s:>18}"
            )
        differences(runs["pairs"], "differences of the runs' means")

    print("\nsample answers")
    rows = evals["qlora"].get("answers", {}).get("per_question", [])
    for label in ("seen_fact", "unseen_fact"):
        for q in [r for r in rows if r["support"] == label][: args.samples]:
            print(f"[{label}] Q: {q['question']}\n   reference: {q['reference']}")
            for name, e in evals.items():
                if e:
                    r = next(r for r in e["answers"]["per_question"] if r["id"] == q["id"])
                    print(f"   {name:<9}: {r['response']!r} (facts right: {r['fact_correct']}, F1 {r['f1']})")
    if args.out:
        import shutil

        args.out.mkdir(parents=True, exist_ok=True)
        for path in [
            *(results / "eval").glob("*.json"),
            *(results / "cards").glob("*.md"),
            results / "report.html",
            results / "data/split_stats.json",
        ]:
            if path.exists():
                shutil.copy(path, args.out / (path.name if path.parent.name != "cards" else f"card_{path.name}"))


if __name__ == "__main__":
    main()
