"""Ordered parallel map for the data stages: results come back in input order, so the output
is the same bytes whatever the number of workers.

The number of workers is the rule's `threads` (what Snakemake grants from --cores). Workers are
separate processes (the work is pure-Python text handling, which threads would serialise);
one worker runs in-process, with no pool at all.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _context():
    # fork is cheap and safe here (the stages import no GPU library); macOS's default, spawn,
    # is the safe choice where system frameworks do not survive a fork.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 1, ahead: int = 4) -> Iterator[R]:
    """`map(fn, items)` over `workers` processes, results in input order, lazily.

    At most `ahead` items per worker are in flight (Pool.imap would read the whole input at
    once), so memory holds a bounded number of inputs and results. `fn` must be a
    module-level function (or a functools.partial of one)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with _context().Pool(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= workers * ahead:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# Below this much input per worker a pool costs more than it saves (process start-up, and on
# macOS every worker importing the libraries again).
MIN_BYTES_PER_WORKER = 4_000_000


def workers_for(total_bytes: int, workers: int) -> int:
    """The workers worth starting for `total_bytes` of input, at most `workers` (logged)."""
    chosen = max(1, min(workers, total_bytes // MIN_BYTES_PER_WORKER))
    log.info("%.1f MB of text: %d worker process(es) of the %d thread(s) given", total_bytes / 1e6, chosen, workers)
    return chosen
