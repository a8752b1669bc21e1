"""Logging for rule scripts: messages go to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

from .errors import PipelineError


def setup_logging(log_path: str | None) -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
    return logging.getLogger("farense")


@contextmanager
def stage(log_path: str | None):
    """Run a rule script's body: a PipelineError becomes one clear line and exit status 1."""
    log = setup_logging(log_path)
    try:
        yield log
    except PipelineError as err:
        log.error("%s", err)
        raise SystemExit(1) from None
