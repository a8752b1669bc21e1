"""Rule scripts' frame: logging to the rule's log file and stderr, what a killed run left beside
the outputs removed first, one clear line for a PipelineError or a full disk, a stop on SIGTERM
that unwinds, and the job's provenance entry once its outputs are complete."""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import PipelineError


def setup_logging(log_path: str | None, append: bool = False) -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="a" if append else "w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    return logging.getLogger("farense")


def _paths(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def record_provenance(smk, started) -> str:
    """Write the job's entry to its `lineage` output (atomically); returns its path."""
    from . import provenance
    from .textio import write_json_atomic

    target = smk.output.lineage
    inputs = {name: _paths(value) for name, value in smk.input.items()}
    outputs = {name: str(value) for name, value in smk.output.items() if name != "lineage"}
    params = {name: value for name, value in smk.params.items()}
    known = {p for paths in inputs.values() for p in paths}
    for name in ("model", "base"):  # a base model named in the config (a local folder) is an input too
        value = params.get(name)
        if isinstance(value, str) and value not in known and Path(value).exists():
            inputs["external_" + name] = [value]
    entry = provenance.make_entry(
        Path(target).stem, smk.rule, dict(smk.wildcards.items()), inputs, outputs, params, started, provenance.now()
    )
    write_json_atomic(target, entry)
    return target


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit(143). Slurm stops a job (scancel, or past its time limit) with
    SIGTERM, then SIGKILL KillWait seconds later (30 by default); Python's default for SIGTERM
    dies at once, and the exception instead lets the atomic writers (farense.textio) remove their
    half-written temporary files and folders before the job ends."""

    owner = os.getpid()

    def stop(signum, frame):
        if os.getpid() != owner:  # a worker forked by farense.parallel (its pool stops it so): at once
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a library caller): its own signals are its business
        pass


def job_name(smk) -> str:
    """The job as the lineage names it: the rule, and its wildcards' values (evaluate_lora)."""
    return "_".join([smk.rule, *(str(v) for _, v in smk.wildcards.items())])


@contextmanager
def stage(smk):
    """Run a rule script's body (`smk`: the snakemake object, or a log path). First removes what a
    killed run of the job left beside its outputs. A PipelineError becomes one clear line and
    exit status 1, a full disk one line naming the job and the file; on success the provenance
    entry is written."""
    from .diskspace import DiskFullError, full_disk_message, out_of_space
    from .provenance import now
    from .stale_locks import hold
    from .textio import remove_leftovers

    is_job = not isinstance(smk, (str, type(None)))
    if is_job:
        hold()  # a job that outlives a killed Snakemake keeps the workflow's locks alive
    log = setup_logging(smk.log[0] if is_job else smk)
    stop_on_sigterm()
    job = job_name(smk) if is_job else "stage"
    outputs = [str(v) for v in smk.output] if is_job else []
    for path in outputs:
        for left in remove_leftovers(path):
            log.info("removed %s, left by an interrupted run", left)
    started = now()
    try:
        yield log
        if is_job and "lineage" in smk.output.keys():
            log.info("provenance: %s", record_provenance(smk, started))
    except BaseException as err:
        # a full disk met by a write that no atomic_path, atomic_dir or diskspace.writing guarded
        # (judged before anything is removed: MLX's error is read against the space left)
        unguarded = (
            isinstance(err, Exception)
            and not isinstance(err, PipelineError)
            and bool(outputs)
            and out_of_space(err, outputs[0])
        )
        message = unguarded and full_disk_message(outputs[0], what="one of its outputs (" + ", ".join(outputs) + ")")
        # Snakemake removes a failed job's outputs; what was being written beside them goes too
        for path in outputs:
            remove_leftovers(path)
        if isinstance(err, DiskFullError):
            log.error("%s: %s", job, err)
        elif isinstance(err, PipelineError):
            log.error("%s", err)
        elif unguarded:
            log.error("%s: %s", job, message)
        else:
            if isinstance(err, SystemExit) and err.code == 128 + signal.SIGTERM:
                log.error("stopped by SIGTERM (a scheduler's cancel or time limit): the outputs are not written")
            raise
        raise SystemExit(1) from None
