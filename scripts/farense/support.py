"""Support labels of test questions: is the fact a test question asks for stated in training?

- seen_fact: one training record states every fact of the reference answer and the subject the
  question names (for a match: its opponent and date), in whatever wording: a prose chunk, a
  result written as prose, another question. The split keeps the question/answer pair itself
  and its near duplicates out of training (the leakage check proves it), so a model that answers
  it rightly has learnt the fact, not the pair.
- unseen_fact: no training record states them all. A model cannot know it from our data; what
  it asserts there is a guess (the evaluation's hallucination rate).

Only what training teaches counts. A record is a context and what the model learns to write
after it: a question and its answer; in the dialogue formats, a prose record's first sentence
(given, masked out of the loss by training.mask_prompt) and the rest; in the text format, all of
it. A question is seen when one training record holds its subject anywhere and writes its
answer's facts in the part that is learnt: a fact only in a given first sentence is not taught.

"States" is farense.facts.states, the same test the evaluation applies to a model's answer. A
question whose answer has no checkable fact (no number, date, name...) is labelled by its subject;
one with neither is unseen_fact: nothing shows that training states it.

Training texts are searched through an index of the few words the questions need (names, years),
built in one pass over the training records by the workers; only the records holding all the
words of a question are then checked fact by fact.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from . import facts as factlib
from .parallel import ordered_map
from .records import continuation
from .textio import open_parquet

SEEN, UNSEEN = "seen_fact", "unseen_fact"
LABELS = (SEEN, UNSEEN)


def needed_facts(facts_json: str) -> tuple[list[dict], list[dict]]:
    """(the answer's facts, the subject's): what a training record must write, and hold, for the
    question to count as seen."""
    parsed = json.loads(facts_json) if facts_json else {}
    return parsed.get("answer", []), parsed.get("subject", [])


def teaches(answer: list[dict], subject: list[dict], record: tuple[str, str]) -> bool:
    """Whether a record (its whole text, the part written after the context) teaches the facts:
    the subject anywhere in it, the answer's facts in the written part."""
    whole, written = record
    given = [f for f in answer if f in subject]  # what the question itself holds (a match's date) need not be written
    return all(factlib.states(f, whole) for f in subject + given) and all(
        factlib.states(f, written) for f in answer if f not in given
    )


def key_tokens(needed: list[dict]) -> frozenset[str]:
    """Words every text stating `needed` holds: the words of names and competitions, and the
    years of dates and seasons."""
    tokens = set()
    for f in needed:
        if f["kind"] in ("name", "competition"):
            # split as the index splits a text (plain_words): "Beira-Mar" is "beira" and "mar" there,
            # and a key word the index never holds would make the fact unfindable (unseen_fact)
            tokens.update(w for w in factlib.plain_words(f["value"]) if len(w) > 2 and w not in ("das", "dos"))
        elif f["kind"] in ("date", "season"):
            tokens.add(f["value"][:4])
        # not numbers: "7000" may be written "7 000" or "sete mil", and the year 2021 "2020/21"
    return frozenset(tokens)


def _taught(records_path: str, group: int, prose_given: bool) -> list[tuple[str, str]]:
    """(whole text, the part training writes after the context) of each record of a row group: a
    question record's answer; a prose record's continuation when its first sentence is given
    (`prose_given`), else all of it."""
    table = open_parquet(records_path).read_row_group(group, columns=["text", "question", "answer"])
    rows = zip(*(table.column(c).to_pylist() for c in ("text", "question", "answer")))
    return [
        (text, answer if question else continuation(text)[1] if prose_given else text)
        for text, question, answer in rows
    ]


def _postings(
    job, records_path: str, tokens: frozenset[str], keyless: list[tuple[list, list]], prose_given: bool
) -> tuple[list, set[int]]:
    """The worker's share of one row group's masked rows: (row number in the file, the index words
    it holds) for rows holding any, and which of the `keyless` questions (facts with no word to
    look them up by) a row states in full."""
    group, mask, first_row = job
    if keyless:  # the part each record teaches, for the questions checked against every record
        records = _taught(records_path, group, prose_given)
        texts = [whole for whole, _ in records]
    else:
        texts = open_parquet(records_path).read_row_group(group, columns=["text"]).column("text").to_pylist()
    out, stated = [], set()
    for row in np.flatnonzero(mask).tolist():
        present = tokens.intersection(factlib.plain_words(texts[row])) if tokens else ()
        if present:
            out.append((first_row + row, frozenset(present)))
        for i, (answer, subject) in enumerate(keyless):
            if i not in stated and teaches(answer, subject, records[row]):
                stated.add(i)
    return out, stated


def label(
    records_path, train_mask: np.ndarray, questions: list[str], workers: int = 1, prose_given: bool = True
) -> list[str]:
    """The support label of each question (its `facts` JSON), against the records of
    `records_path` where `train_mask` (one flag per row of the file) is set; `prose_given`: a
    prose record's first sentence is given, not taught (the dialogue formats).

    One pass over the training records builds the index and checks the rare question with no word
    to look up (only numbers, say) against every record; then only the candidates of the others are
    read again. Memory holds the index and the candidates' texts, never the training split."""
    needed = [needed_facts(q) for q in questions]
    keys = [key_tokens(answer + subject) for answer, subject in needed]
    keyless = [i for i, ((answer, subject), k) in enumerate(zip(needed, keys)) if (answer or subject) and not k]
    universe = frozenset().union(*keys) if keys else frozenset()
    parquet = open_parquet(records_path)
    jobs, start = [], 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        mask = train_mask[start : start + rows]
        if mask.any():
            jobs.append((group, mask, start))
        start += rows
    holders: dict[str, set[int]] = {}
    keyless_seen: set[int] = set()
    if universe or keyless:
        scan = functools.partial(
            _postings,
            records_path=str(records_path),
            tokens=universe,
            keyless=[needed[i] for i in keyless],
            prose_given=prose_given,
        )
        for part, stated in ordered_map(scan, jobs, workers):
            keyless_seen.update(keyless[i] for i in stated)
            for row, present in part:
                for token in present:
                    holders.setdefault(token, set()).add(row)
    candidates = [set.intersection(*(holders.get(t, set()) for t in key)) if key else set() for key in keys]
    texts = _texts(records_path, jobs, set().union(*candidates) if candidates else set(), prose_given)
    labels = []
    for i, ((answer, subject), rows) in enumerate(zip(needed, candidates)):
        if not answer and not subject:  # nothing to check: no training record can be shown to state it
            labels.append(UNSEEN)
        elif i in keyless_seen or any(teaches(answer, subject, texts[row]) for row in sorted(rows)):
            labels.append(SEEN)
        else:
            labels.append(UNSEEN)
    return labels


def _texts(records_path, jobs, rows: set[int], prose_given: bool) -> dict[int, tuple[str, str]]:
    """What training teaches of the given file rows, reading only the row groups that hold them."""
    out = {}
    for group, mask, first_row in jobs:
        wanted = [r - first_row for r in rows if first_row <= r < first_row + len(mask)]
        if wanted:
            taught = _taught(str(records_path), group, prose_given)
            for local in wanted:
                out[first_row + local] = taught[local]
    return out
