"""Warnings about the raw material (a skipped row, a bad line), as the stats files list them:
{"path", "line" (when known), "message"}. The one collector the data stages use."""

from __future__ import annotations

import logging


class InputWarnings(list):
    """A list of warnings. With a logger, each is also logged as it is added; without one (in a
    worker process, whose log lines would interleave), the stage logs them with `extend_logged`
    when the result comes back, in input order."""

    def __init__(self, logger: logging.Logger | None = None):
        super().__init__()
        self.logger = logger

    def warn(self, path: str, message: str, line: int | None = None) -> None:
        entry = {"path": path, "message": message} if line is None else {"path": path, "line": line, "message": message}
        self.append(entry)
        if self.logger is not None:
            self.logger.warning("%s%s: %s", path, "" if line is None else f":{line}", message)

    def extend_logged(self, entries: list[dict]) -> None:
        """Add warnings collected elsewhere, logging each when this collector logs."""
        for entry in entries:
            self.warn(**entry)
