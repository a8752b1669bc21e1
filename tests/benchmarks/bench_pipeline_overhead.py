"""Benchmark of the pipeline's own overhead: how long Snakemake takes to decide that nothing is to
be done, and how many jobs each kind of change reruns.

    python tests/benchmarks/bench_pipeline_overhead.py [--repeats 5] [--keep DIR]

Copies the workflow (Snakefile, rules, scripts, config, resources) to a temporary folder, builds
it once with `snakemake --cores 1 results/report.html`, then:
- times `snakemake -n results/report.html` on the up-to-date tree (`--repeats` times; min and
  median), target under 2 s;
- for each change, dry-runs `snakemake -n results/report.html --quiet rules` and counts the jobs
  of the job-stats table: a raw file edited under resources/raw (restored afterwards), the
  split seed, the learning rate and an evaluation parameter given with --config.
Not part of the test suite: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import copy_workflow  # noqa: E402  (the tests' copy of the workflow)

TARGET = "results/report.html"
CHANGES = {
    "nothing changed": [],
    "split seed": ["--config", 'split={"seed": 7}'],
    "learning rate": ["--config", 'training={"learning_rate": 0.001}'],
    "evaluation max_new_tokens": ["--config", 'evaluation={"max_new_tokens": 16}'],
}


@contextmanager
def workspace(keep: Path | None, prefix: str):
    """A copy of the workflow: `keep` (reused if it holds one), or a temporary folder removed afterwards."""
    if keep:
        if not (keep / "Snakefile").exists():
            copy_workflow(keep)
        yield keep
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield copy_workflow(Path(tmp) / "wf")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def snakemake(workdir: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "snakemake", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return time.perf_counter() - start, proc


def job_counts(output: str) -> dict[str, int]:
    """The rule -> count table Snakemake prints (`job  count` ... `total  N`)."""
    counts, inside = {}, False
    for line in output.splitlines():
        if re.match(r"^job\s+count\s*$", line.strip()):
            inside = True
            continue
        if inside:
            m = re.match(r"^(\S+)\s+(\d+)\s*$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
                if m.group(1) == "total":
                    break
            elif line.strip() and not set(line.strip()) <= {"-", " "}:
                break
    return counts


def describe(counts: dict[str, int]) -> str:
    jobs = ", ".join(f"{k}" + (f" x{v}" if v > 1 else "") for k, v in counts.items() if k != "total")
    return jobs or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the copy here instead of a temporary folder")
    args = parser.parse_args()
    with workspace(args.keep, "farense-overhead-") as wf:
        seconds, proc = snakemake(wf, "--cores", "1", TARGET)
        if proc.returncode != 0:
            raise SystemExit(f"build failed:\n{proc.stdout[-3000:]}")
        print(
            f"build: `snakemake --cores 1 {TARGET}` {seconds:.1f} s (jobs run: {job_counts(proc.stdout).get('total', 0)})",
            flush=True,
        )

        times = []
        for _ in range(args.repeats):
            seconds, proc = snakemake(wf, "-n", TARGET)
            times.append(seconds)
        nothing = "Nothing to be done" in proc.stdout
        print(
            f"up to date: `snakemake -n {TARGET}` min {min(times):.2f} s, median {statistics.median(times):.2f} s "
            f"over {args.repeats} runs ('Nothing to be done': {nothing})",
            flush=True,
        )

        print(f"\n{'change':<56} {'jobs':>4} {'dry-run s':>9}  rerun")
        raw = sorted((wf / "resources/raw").rglob("*.txt"))[0]
        original, stat = raw.read_bytes(), raw.stat()
        raw.write_bytes(original + "\nUma frase nova sobre o Farense, acrescentada pelo benchmark.\n".encode())
        try:
            seconds, proc = snakemake(wf, "-n", TARGET, "--quiet", "rules")
        finally:
            raw.write_bytes(original)
            os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        rows = [(f"raw file edited ({raw.relative_to(wf / 'resources/raw')})", seconds, proc)]
        for name, extra in CHANGES.items():
            seconds, proc = snakemake(wf, "-n", TARGET, *extra, "--quiet", "rules")
            rows.append((name + (" " + extra[1] if extra else ""), seconds, proc))
        for name, seconds, proc in rows:
            if proc.returncode != 0:
                reason = next((line.strip() for line in proc.stdout.splitlines() if line.strip()), "")
                print(f"{name:<56} {'-':>4} {seconds:9.2f}  rejected (exit {proc.returncode}): {reason[:160]}")
                continue
            counts = job_counts(proc.stdout)
            print(f"{name:<56} {counts.get('total', 0):>4} {seconds:9.2f}  {describe(counts)}")


if __name__ == "__main__":
    main()
