"""Kill sweep: the tiny build killed with SIGKILL (its whole process group) at many moments, each
time recovered the way the README says (the same command again), and checked.

    python tests/benchmarks/bench_kill_sweep.py [--times 13] [--events all] [--keep DIR]

Builds the workflow once uninterrupted (`snakemake --cores 1 results/report.html` with
tests/config/tiny.yaml) and measures its time T. Then, for each kill point, in a fresh copy: starts
the same build, kills it at the moment, runs the same command again, and checks (tests/kill_sweep.py)
that the recovery finishes, that `python scripts/cli/lineage.py verify` holds, that results/clean/* and
results/data/* are byte-identical to the uninterrupted build's, that both adapters agree with its
adapters within 1e-4, and that no temporary file is left under results/. Kill points:
- `--times N` moments spread over the build: (i + 0.5) / N x T after the start, i = 0..N-1 (T:
  the last build time measured; a point the build outran is tried again at its fraction of the
  time that build took);
- `--events`: observed moments (kill_sweep.EVENTS: a Parquet write, the JSONL splits being
  written, model folders being written, checkpoint writes, an adapter just written, an evaluation,
  the lineage gathering), each killed as soon as it is seen.
A point whose moment never came (the build ended first) is reported as missed, not tried.
Prints one line per point and `kill points tried: N, failed: M`; exits 1 when M > 0.
Not part of the test suite (tests/test_crash_safety.py kills at three moments in CI).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import kill_sweep  # noqa: E402
from conftest import copy_workflow  # noqa: E402

ARGS = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=13, help="kill points spread over the build's time")
    parser.add_argument(
        "--events", nargs="*", default=["all"], help="observed moments to kill at (names of kill_sweep.EVENTS, or all)"
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one, removed)")
    args = parser.parse_args()
    events = list(kill_sweep.EVENTS) if args.events == ["all"] else args.events
    unknown = [e for e in events if e not in kill_sweep.EVENTS]
    if unknown:
        parser.error(f"unknown events {unknown}; choose from {list(kill_sweep.EVENTS)}")

    base = args.keep or Path(tempfile.mkdtemp(prefix="kill-sweep-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        reference = copy_workflow(base / "reference")
        started = time.monotonic()
        build = kill_sweep.recover(reference, ARGS)  # an uninterrupted build: the same command
        total = time.monotonic() - started
        if build.returncode != 0:
            print(build.stdout[-3000:])
            print("the uninterrupted build failed")
            return 1
        print(f"uninterrupted build: {total:.1f} s (`{' '.join(['snakemake', *kill_sweep.build_command(*ARGS)[3:]])}`)")
        fractions = [(i + 0.5) / args.times for i in range(args.times)]
        points = [(f"at {f:.0%} of the build's time", f, None) for f in fractions]
        points += [(name, None, kill_sweep.EVENTS[name]) for name in events]

        tried = failed = missed = 0
        print(f"{'kill point':52} {'killed at':>9}  {'job running':18} {'recovery':>8}  result")
        for number, (name, fraction, when) in enumerate(points):
            wf = copy_workflow(base / f"point{number:02d}")
            at_seconds = None if fraction is None else fraction * total
            kill = kill_sweep.run_and_kill(
                wf, ARGS, name, at_seconds=at_seconds, when=when, log=base / f"point{number:02d}.killed.log"
            )
            if not kill.killed and not kill.build_failed and fraction is not None:
                # Other jobs on the machine make build times vary (80 to 112 s here): a build faster
                # than T ends before a late point. Once: the same fraction of the time it just took.
                total = kill.seconds
                shutil.rmtree(wf)
                wf = copy_workflow(base / f"point{number:02d}")
                kill = kill_sweep.run_and_kill(
                    wf, ARGS, name, at_seconds=fraction * total, when=None, log=base / f"point{number:02d}.killed.log"
                )
            if not kill.killed:
                if kill.build_failed:  # the build stopped by itself before the moment came
                    failed += 1
                    print(
                        f"{name:52} {'-':>9}  {kill.running:18} {'-':>8}  FAILED before the kill: {kill.build_failed}"
                    )
                    continue
                missed += 1
                print(f"{name:52} {'-':>9}  {kill.running:18} {'-':>8}  missed: the build ended first")
                shutil.rmtree(wf, ignore_errors=True)
                continue
            tried += 1
            started = time.monotonic()
            recovery = kill_sweep.recover(wf, ARGS)
            seconds = time.monotonic() - started
            problems = kill_sweep.check(wf, reference, recovery)
            if kill.build_failed:
                problems.insert(0, f"the killed run: {kill.build_failed}")
            failed += bool(problems)
            (base / f"point{number:02d}.recovery.log").write_text(recovery.stdout, encoding="utf-8")
            print(
                f"{name:52} {kill.seconds:8.1f}s  {kill.running:18} {seconds:7.1f}s  {'ok' if not problems else 'FAILED: ' + ' | '.join(problems)}",
                flush=True,
            )
            if not problems and not args.keep:
                shutil.rmtree(wf, ignore_errors=True)
        print(f"kill points tried: {tried}, failed: {failed} (missed: {missed}; recovery: {kill_sweep.RECOVERY})")
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
