"""Kill the whole build with SIGKILL at a chosen moment, recover the way the README says, and check
what the recovery gives. Shared by tests/test_crash_safety.py (a few moments, in CI) and
tests/benchmarks/bench_kill_sweep.py (many).

A moment is a time after the start, or an observed one: a predicate on the work folder that
becomes true while the build runs (a temporary file of a Parquet write, a checkpoint folder being
written, the lineage job's log), polled every POLL_SECONDS. SIGKILL goes to the build's whole
process group (`kill -9 -- -PGID`), so no process of the build can clean up after itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

TARGET = "results/report.html"
# What README.md tells a user to do after a kill: run the same command again (profiles/default
# reruns what the kill interrupted; the Snakefile removes the lock files of a dead run).
RECOVERY = "the same command again"
POLL_SECONDS = 0.001  # a checkpoint of the tiny adapters is three small files: its write is brief
ADAPTER_TOLERANCE = 1e-4
DATA_FOLDERS = ("results/clean", "results/data")
ADAPTERS = ("results/adapters/qlora/adapters.safetensors", "results/adapters/lora/adapters.safetensors")


def _exists(pattern: str, min_bytes: int = 0, exclude: str | None = None) -> Callable[[Path], bool]:
    """A moment: a file matching `pattern` (a glob under the work folder) holds `min_bytes` or more."""
    folder, name = pattern.rsplit("/", 1)

    def seen(wf: Path) -> bool:
        for path in (wf / folder).glob(name):
            if exclude and re.search(exclude, path.name):
                continue
            try:
                if path.stat().st_size >= min_bytes:
                    return True
            except OSError:  # renamed or removed meanwhile
                continue
        return False

    return seen


# Observed moments, in the order a build meets them. A Parquet writer has its file open once the
# file holds its 4-byte magic; the JSONL splits' temporary files (not the shuffle's buckets or
# scratch) exist only while the splits are written.
EVENTS: dict[str, Callable[[Path], bool]] = {
    "clean_text: writing corpus.parquet": _exists("results/clean/.corpus.parquet.*.parquet.tmp", min_bytes=4),
    "build_records: writing records.parquet": _exists("results/data/.records.parquet.*.parquet.tmp", min_bytes=4),
    "split_jsonl: writing the JSONL splits": _exists("results/data/.train.jsonl.*.tmp", exclude=r"\.(bucket|scratch)"),
    "build_base_model: model folder being written": _exists("results/models/base.tmp"),
    "convert_int4: int4 folder being written": _exists("results/models/base-int4.tmp"),
    "train_qlora: a checkpoint being written": _exists("results/checkpoints/qlora/last.tmp"),
    "train_lora: a checkpoint being written": _exists("results/checkpoints/lora/last.tmp"),
    # a later checkpoint, while the one before is still in place: the swap of farense.checkpoints.save
    "train_qlora: a checkpoint replacing the one before": lambda wf: all(
        (wf / "results/checkpoints/qlora" / name).exists() for name in ("last", "last.tmp/optimizer.safetensors")
    ),
    "train_lora: outputs just written": _exists("results/lineage/train_lora.json"),
    "evaluate_lora: evaluating": _exists("results/logs/evaluate_lora.log"),
    "lineage: the lineage being gathered": _exists("results/logs/lineage.log"),
}


@dataclass
class Kill:
    """What happened at one kill point."""

    name: str
    killed: bool = False  # False: the build ended (or failed) before the moment came
    seconds: float = 0.0  # after the start: when it was killed, or when it ended by itself
    running: str = ""  # the job Snakemake had started last
    build_failed: str = ""  # the killed run had already stopped with an error


def build_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "1", TARGET, *args]


def start(wf: Path, args: tuple[str, ...], log: Path) -> subprocess.Popen:
    """The build, in its own process group (what the kill is sent to)."""
    handle = open(log, "w", encoding="utf-8")
    try:
        return subprocess.Popen(
            build_command(*args), cwd=wf, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        handle.close()


def last_job(log: Path) -> str:
    jobs = re.findall(r"^(?:local)?rule (\w+):", log.read_text(encoding="utf-8", errors="replace"), flags=re.M)
    return jobs[-1] if jobs else ""


def processes_in(wf: Path) -> list[int]:
    """Processes whose working directory lies in `wf` (what a kill could have left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(wf.resolve()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGKILL to the build's process group; returns once every process of the group is gone
    (killed children are reaped by init a moment after their parent)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def run_and_kill(
    wf: Path,
    args: tuple[str, ...],
    name: str,
    at_seconds: float | None = None,
    when: Callable[[Path], bool] | None = None,
    log: Path | None = None,
    timeout: float = 900,
) -> Kill:
    """Start the build and SIGKILL its process group after `at_seconds` or as soon as `when(wf)`."""
    log = log or wf.parent / f"{wf.name}.killed.log"
    kill = Kill(name)
    started = time.monotonic()
    proc = start(wf, args, log)
    while proc.poll() is None and time.monotonic() - started < timeout:
        if (at_seconds is not None and time.monotonic() - started >= at_seconds) or (when is not None and when(wf)):
            kill_group(proc)
            kill.killed, kill.seconds = True, time.monotonic() - started
            break
        time.sleep(POLL_SECONDS)
    else:
        kill.seconds = time.monotonic() - started
        if proc.poll() is None:
            kill_group(proc)
            raise TimeoutError(f"{name}: the build ran past {timeout} s")
        if proc.returncode != 0:
            kill.build_failed = f"exit status {proc.returncode}; see {log}"
    kill.running = last_job(log)
    leftover = {pid: _cmdline(pid) for pid in processes_in(wf)}
    for pid in leftover:  # none expected: every process of the build is in its group, now gone
        os.kill(pid, signal.SIGKILL)
    if leftover:
        kill.build_failed += f" process(es) outlived the kill of the group: {leftover}"
    return kill


def recover(wf: Path, args: tuple[str, ...], timeout: float = 900) -> subprocess.CompletedProcess:
    """What the README says to do after a kill."""
    return subprocess.run(
        build_command(*args), cwd=wf, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )


def load_adapter(path: Path) -> dict:
    import mlx.core as mx

    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


def temporary_files(wf: Path) -> list[str]:
    """Temporary names the writers use, found under results/ (a whole recovery removes them all)."""
    pattern = re.compile(r"(\.tmp($|\.)|\.scratch\.|\.signatures\.)")
    return sorted(str(p.relative_to(wf)) for p in (wf / "results").rglob("*") if pattern.search(p.name))


def check(wf: Path, reference: Path, recovery: subprocess.CompletedProcess) -> list[str]:
    """Problems of a recovered build against an uninterrupted one (empty: none)."""
    if recovery.returncode != 0:
        tail = "\n".join(recovery.stdout.splitlines()[-15:])
        return [f"the recovery stopped with exit status {recovery.returncode}:\n{tail}"]
    problems = []
    verify = subprocess.run(
        [sys.executable, "scripts/cli/lineage.py", "verify"],
        cwd=wf,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if verify.returncode != 0:
        problems.append("lineage.py verify: " + verify.stdout.strip().replace("\n", "; ")[:800])
    for folder in DATA_FOLDERS:
        ours = sorted(p.name for p in (wf / folder).iterdir())
        theirs = sorted(p.name for p in (reference / folder).iterdir())
        if ours != theirs:
            problems.append(f"{folder} holds {ours}, the uninterrupted build {theirs}")
            continue
        for name in ours:
            if (wf / folder / name).read_bytes() != (reference / folder / name).read_bytes():
                problems.append(f"{folder}/{name} differs from the uninterrupted build's")
    for path in ADAPTERS:
        ours, theirs = load_adapter(wf / path), load_adapter(reference / path)
        if ours.keys() != theirs.keys():
            problems.append(f"{path}: other tensors than the uninterrupted build's")
            continue
        diff = max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)
        if not diff <= ADAPTER_TOLERANCE:
            problems.append(
                f"{path}: differs by {diff:.3g} from the uninterrupted build's (tolerance {ADAPTER_TOLERANCE})"
            )
    left = temporary_files(wf)
    if left:
        problems.append(f"temporary files left: {left}")
    return problems
