"""Snakemake's locks left by a killed run, removed at the next start when no Snakemake of this
workflow is alive in the folder, so that recovering from a kill is running the same command again.

Snakemake locks its working directory with files in .snakemake/locks/ and deletes them when it
ends; a run killed with SIGKILL (an out-of-memory kill, a closed terminal's process group) cannot,
and every later run stops with LockException until `snakemake --unlock`. Those files name the
locked paths, not a process, so Snakemake cannot tell a dead lock from a live one. Here every
Snakemake that loads the workflow, and every job's process (runlog.stage), holds a shared
flock(2) on ALIVE for its lifetime; the kernel drops it when the process ends, however it ends.
A start that can take the lock exclusively knows that no other Snakemake of this workflow, nor
any of its jobs, is alive here, so lock files present are stale.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ALIVE = ".snakemake/farense-alive.lock"
LOCKS = ".snakemake/locks"
_held: list[int] = []  # this process's descriptor on ALIVE, kept open (closing it drops the lock)


def _open(workdir: Path) -> int | None:
    try:
        (workdir / ALIVE).parent.mkdir(parents=True, exist_ok=True)
        return os.open(workdir / ALIVE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None


def release_stale_locks(workdir: str | os.PathLike = ".") -> list[str]:
    """Take this process's shared hold on ALIVE; before that, if no other process holds it, remove
    Snakemake's lock files (returned). Where flock(2) is missing or fails, nothing is done and
    Snakemake's own behaviour (stop, ask for --unlock) stays."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return []
    if _held:  # once per process: the workflow can be loaded twice (--lint)
        return []
    workdir = Path(workdir)
    fd = _open(workdir)
    if fd is None:
        return []
    removed: list[str] = []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another Snakemake of this workflow, or a job, runs here (a build, a dry run): its locks hold
        else:
            locks = workdir / LOCKS
            if locks.is_dir():
                removed = sorted(p.name for p in locks.iterdir())
                shutil.rmtree(locks, ignore_errors=True)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while another start holds it exclusively (its check)
    except OSError:
        os.close(fd)
        return removed
    _held.append(fd)
    return removed


def hold(workdir: str | os.PathLike = ".") -> None:
    """A job's process takes the shared hold too (Snakemake does not pass its descriptor on): a job
    that outlives its Snakemake (only Snakemake itself killed) keeps the locks until it ends, so
    that no new run writes the same outputs beside it."""
    try:
        import fcntl
    except ImportError:
        return
    if _held:
        return
    fd = _open(Path(workdir))
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return
    _held.append(fd)
