"""Support labels of test questions: is the fact a test question asks for stated in training?

- seen_fact: one training record states every fact of the reference answer and the subject the
  question names (for a match: its opponent and date), in whatever wording: a prose chunk, a
  result written as prose, another question. The split keeps the question/answer pair itself
  and its near duplicates out of training (the leakage check proves it), so a model that answers
  it rightly has learnt the fact, not the pair.
- unseen_fact: no training record states them all. A model cannot know it from our data; what
  it asserts there is a guess (the evaluation's hallucination rate).

"States" is farense.facts.states, the same test the evaluation applies to a model's answer. A
question whose answer has no checkable fact (no number, date, name...) is labelled by its subject.

Training texts are searched through an index of the few words the questions need (names, years),
built in one pass over the training records by the workers; only the records holding all the
words of a question are then checked fact by fact.
"""

from __future__ import annotations

import functools
import json
import re

import numpy as np

from . import facts as factlib
from .parallel import ordered_map
from .textio import open_parquet

SEEN, UNSEEN = "seen_fact", "unseen_fact"
LABELS = (SEEN, UNSEEN)
_WORD = re.compile(r"\w+")


def needed_facts(facts_json: str) -> list[dict]:
    """What a training record must state for the question to count as seen: the answer's facts and the subject's."""
    parsed = json.loads(facts_json) if facts_json else {}
    return parsed.get("answer", []) + parsed.get("subject", [])


def key_tokens(needed: list[dict]) -> frozenset[str]:
    """Words every text stating `needed` holds: the words of names and competitions, and the
    years of dates and seasons."""
    tokens = set()
    for f in needed:
        if f["kind"] in ("name", "competition"):
            tokens.update(w for w in factlib.fold(f["value"]).split() if len(w) > 2 and w not in ("das", "dos"))
        elif f["kind"] in ("date", "season"):
            tokens.add(f["value"][:4])
        # not numbers: "7000" may be written "7 000" or "sete mil", and the year 2021 "2020/21"
    return frozenset(tokens)


def _postings(job, records_path: str, tokens: frozenset[str]) -> list[tuple[int, frozenset[str]]]:
    """(row number in the file, the index words it holds) for the masked rows of one row group:
    the worker's share of the index."""
    group, mask, first_row = job
    texts = open_parquet(records_path).read_row_group(group, columns=["text"]).column("text").to_pylist()
    rows = np.flatnonzero(mask)
    out = []
    for row in rows.tolist():
        present = tokens.intersection(_WORD.findall(factlib.fold(texts[row])))
        if present:
            out.append((first_row + row, frozenset(present)))
    return out


def label(records_path, train_mask: np.ndarray, questions: list[str], workers: int = 1) -> list[str]:
    """The support label of each question (its `facts` JSON), against the records of
    `records_path` where `train_mask` (one flag per row of the file) is set."""
    needed = [needed_facts(q) for q in questions]
    keys = [key_tokens(n) for n in needed]
    universe = frozenset().union(*keys) if keys else frozenset()
    parquet = open_parquet(records_path)
    jobs, start = [], 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        mask = train_mask[start : start + rows]
        if mask.any():
            jobs.append((group, mask, start))
        start += rows
    all_train = np.flatnonzero(train_mask)
    holders: dict[str, set[int]] = {}
    if universe:
        for part in ordered_map(functools.partial(_postings, records_path=str(records_path), tokens=universe), jobs, workers):
            for row, present in part:
                for token in present:
                    holders.setdefault(token, set()).add(row)
    candidates = []
    for key in keys:
        if key:
            rows = set.intersection(*(holders.get(t, set()) for t in key))
        else:  # nothing to look up by: every training record is a candidate (rare: a question of plain words)
            rows = set(all_train.tolist())
        candidates.append(rows)
    texts = _texts(parquet, jobs, set().union(*candidates) if candidates else set())
    return [SEEN if any(all(factlib.states(f, texts[row]) for f in n) for row in sorted(rows)) else UNSEEN
            for n, rows in zip(needed, candidates)]


def _texts(parquet, jobs, rows: set[int]) -> dict[int, str]:
    """The texts of the given file rows, reading only the row groups that hold them."""
    out = {}
    for group, mask, first_row in jobs:
        wanted = [r - first_row for r in rows if first_row <= r < first_row + len(mask)]
        if wanted:
            column = parquet.read_row_group(group, columns=["text"]).column("text")
            for local in wanted:
                out[first_row + local] = column[local].as_py()
    return out
