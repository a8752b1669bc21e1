"""Rule scripts' frame: logging to the rule's log file and stderr, one clear line for a
PipelineError, a stop on SIGTERM that unwinds, and the job's provenance entry once its outputs
are complete."""

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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
    return logging.getLogger("farense")


def _paths(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def record_provenance(smk, started) -> str:
    """Write the job's entry to its `lineage` output (atomically); returns its path."""
    from . import lineage
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
    entry = lineage.make_entry(Path(target).stem, smk.rule, dict(smk.wildcards.items()), inputs, outputs, params, started, lineage.now())
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


@contextmanager
def stage(smk):
    """Run a rule script's body (`smk`: the snakemake object, or a log path). A PipelineError
    becomes one clear line and exit status 1; on success the provenance entry is written."""
    from .lineage import now

    log_path = smk if isinstance(smk, (str, type(None))) else smk.log[0]
    log = setup_logging(log_path)
    stop_on_sigterm()
    started = now()
    try:
        yield log
    except PipelineError as err:
        log.error("%s", err)
        raise SystemExit(1) from None
    except SystemExit as stop:
        if stop.code == 128 + signal.SIGTERM:
            log.error("stopped by SIGTERM (a scheduler's cancel or time limit): the outputs are not written")
        raise
    if not isinstance(smk, (str, type(None))) and "lineage" in smk.output.keys():
        log.info("provenance: %s", record_provenance(smk, started))
