"""The split_jsonl stage: leakage-free, seeded train/valid/test JSONL files that mlx-lm reads.

Records are grouped before they are split: chunks of one document, questions with the same
normalised wording, each question or prose wording about a match, and any records whose texts
are exact or near duplicates end up in one group, and a group goes to one split. After
assignment an independent check looks for exact and near duplicates across splits, and for a
question asked in two splits; it must find none.

The test split is built to measure knowledge (farense.support labels each test question):
- for a seeded `probe_fraction` of the facts (a match, a curated question), the fact's probe
  question goes to test and its other records (other questions, the result written as prose)
  to training: the test asks for a fact that training stated in other words;
- for a seeded `unseen_fraction`, every record of the fact goes to test: facts no model can
  know from our data;
- for a `valid_probe_fraction` of the probed facts, the probe goes to validation instead of test,
  so that the validation loss (training.keep: best, early stopping) also measures questions about
  facts that training states in other words, not only records training never saw;
- everything else is split in the configured shares, stratified by kind.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import support
from .dedup import MinHasher, SignatureStore
from .diskspace import writing
from .errors import PipelineError
from .parallel import ordered_map, workers_for
from .split_groups import assign_splits, fact_roles, group_records, leakage_check
from .split_lines import validator as line_validator
from .split_options import FORMATS, SPLITS, SplitOptions
from .split_render import read_kept, render_lines
from .textio import atomic_path, open_parquet, parquet_column_bytes, scratch_dir, write_json_atomic

log = logging.getLogger(__name__)


def fingerprint_row_group(job, records_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(MinHash signatures, exact keys, characters, words) of a row group's kept record texts:
    the grouping work done in the workers. `job` is (row group, kept-rows mask)."""
    texts = read_kept(records_path, *job, ["text"]).column("text").to_pylist()
    signatures, keys = MinHasher().fingerprints(texts)
    chars = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    return signatures, keys, chars, words


# ---------------------------------------------------------------- the stage

_BUCKET_BYTES = 32 * 1024 * 1024


def _lengths_summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"count": 0}
    arr = np.asarray(values)
    return {
        "count": int(arr.size),
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 1),
        "p50": int(np.percentile(arr, 50)),
        "p90": int(np.percentile(arr, 90)),
        "p99": int(np.percentile(arr, 99)),
        "max": int(arr.max()),
    }


def _histogram(values: np.ndarray, bins: int = 20) -> dict:
    if not len(values):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.asarray(values), bins=bins)
    return {"edges": [int(round(e)) for e in edges], "counts": [int(c) for c in counts]}


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """An integer code per value (equal values, equal codes), and the distinct values."""
    encoded = column.combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy(), encoded.dictionary.to_pylist()


def _row_groups(parquet: pq.ParquetFile, keep: np.ndarray):
    """(row group, its kept-rows mask) for each row group holding a kept record, in order:
    the units of work (build_records writes row groups of about 1 MB of text)."""
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        mask = keep[start : start + rows]
        start += rows
        if mask.any():
            yield group, mask


def _split_stats(
    in_split: np.ndarray, kinds: np.ndarray, kind_names: list[str], chars: np.ndarray, words: np.ndarray
) -> dict:
    split_kinds = kinds[in_split]
    present, first = np.unique(split_kinds, return_index=True)
    counts = np.bincount(split_kinds, minlength=len(kind_names))
    return {
        "records": int(in_split.sum()),
        "share": round(int(in_split.sum()) / len(in_split), 4),
        "by_kind": {kind_names[k]: int(counts[k]) for k in present[np.argsort(first)]},  # in order of first record
        "chars": _lengths_summary(chars[in_split]),
        "words": _lengths_summary(words[in_split]),
        "chars_histogram": _histogram(chars[in_split]),
    }


def split_jsonl(records_path, out_dir, stats_path, schema_path, options: SplitOptions, workers: int = 1) -> dict:
    if options.format not in FORMATS:
        raise PipelineError(f"split.format: '{options.format}' is not one of {', '.join(FORMATS)}")
    if options.fractions["train"] <= 0:
        raise PipelineError("split.valid_fraction + split.test_fraction must be below 1")
    line_validator(str(schema_path))  # a bad schema fails before any work
    out_dir = Path(out_dir)
    parquet = open_parquet(records_path)
    meta = parquet.read(columns=["group_key", "kind", "conflict", "fact_key", "probe", "question_key"])
    # Conflicting answers stay out unless asked for: drop them before grouping.
    keep = np.ones(meta.num_rows, dtype=bool) if options.keep_conflicts else ~meta["conflict"].to_numpy()
    excluded_conflicts = int((~keep).sum())
    meta = meta.filter(pa.array(keep))
    n = meta.num_rows
    if not n:
        raise PipelineError(f"{records_path} holds no usable record")
    group_keys, _ = _codes(meta["group_key"])
    # a record of no fact (a chunk) has fact key "": code -1
    fact_codes, fact_values = _codes(pc.fill_null(meta["fact_key"], ""))
    fact_codes = np.where(np.isin(fact_codes, [i for i, v in enumerate(fact_values) if v == ""]), -1, fact_codes)
    probes = pc.fill_null(meta["probe"], False).to_numpy(zero_copy_only=False)
    question_keys = pc.fill_null(meta["question_key"], "").to_numpy(zero_copy_only=False).astype(str)
    kind_codes, kind_values = _codes(meta["kind"])
    kind_names = sorted(kind_values)
    kinds = np.array([kind_names.index(k) for k in kind_values])[kind_codes]
    del meta

    workers = workers_for(parquet_column_bytes(records_path, "text"), workers)
    # Pass 1: fingerprints of every text; signatures wait on disk for the near-duplicate search.
    with (
        scratch_dir(out_dir, f"{SPLITS[0]}.jsonl") as scratch,
        SignatureStore(scratch, options.near_duplicate_threshold) as store,
    ):
        parts = []
        fingerprint = functools.partial(fingerprint_row_group, records_path=str(records_path))
        for signatures, *per_record in ordered_map(fingerprint, _row_groups(parquet, keep), workers):
            store.append(signatures)
            parts.append(per_record)
        near_pairs, _ = store.similar_pairs(workers=workers)
    exact_keys, chars, words = (np.concatenate(column) for column in zip(*parts))
    del parts

    components = group_records(group_keys, exact_keys, near_pairs)
    roles = fact_roles(fact_codes, probes, options)
    assignment = assign_splits(components, kinds, options, roles)
    for index, (split, fraction) in enumerate(options.fractions.items()):
        if fraction > 0 and not (assignment == index).any():
            raise PipelineError(
                f"split '{split}' came out empty: only {len(np.unique(components))} independent group(s) of records; "
                "lower split.valid_fraction/split.test_fraction or add raw data"
            )
    leakage = leakage_check(
        assignment, group_keys, exact_keys, near_pairs, options.near_duplicate_threshold, question_keys
    )
    if not leakage["passed"]:
        raise PipelineError(f"leakage check failed (a bug in grouping): {leakage}")

    # Support labels of the test questions, from what the training records state.
    test_questions = np.flatnonzero((assignment == SPLITS.index("test")) & (question_keys != ""))
    kept_rows = np.flatnonzero(keep)
    train_rows = np.zeros(len(keep), dtype=bool)
    train_rows[kept_rows[assignment == SPLITS.index("train")]] = True
    facts_column = parquet.read(columns=["facts"]).column("facts")
    started = time.perf_counter()
    labels = support.label(
        records_path,
        train_rows,
        [facts_column[int(kept_rows[i])].as_py() or "" for i in test_questions],
        workers,
        prose_given=options.format != "text",
    )
    log.info(
        "support labels of %d test questions against %d training records: %.1f s",
        len(labels),
        int(train_rows.sum()),
        time.perf_counter() - started,
    )
    del facts_column
    support_code = np.zeros(n, dtype=np.int8)
    support_code[test_questions] = [1 + support.LABELS.index(x) for x in labels]

    rng = np.random.default_rng(options.seed + 1)
    n_buckets = max(1, math.ceil(int(chars.sum()) / _BUCKET_BYTES))
    bucket_of = rng.integers(n_buckets, size=n)  # the same draws as one call per record
    targets = {s: out_dir / f"{s}.jsonl" for s in SPLITS}

    def render_jobs():
        done = 0
        for group, mask in _row_groups(parquet, keep):
            kept = int(mask.sum())
            yield (
                group,
                mask,
                assignment[done : done + kept],
                bucket_of[done : done + kept],
                support_code[done : done + kept],
            )
            done += kept

    render_batch = functools.partial(
        render_lines,
        records_path=str(records_path),
        options=options,
        schema_path=str(schema_path),
        labels=[str(targets[s]) for s in SPLITS],
    )
    with _BucketFiles(out_dir, n_buckets) as buckets:
        # Pass 2: render and validate each record into a random bucket of its split (a shuffle in bounded memory).
        for blocks in ordered_map(render_batch, render_jobs(), workers):
            for key, block in blocks.items():
                buckets.write(key, block)
        # Pass 3: shuffle each bucket, write each split atomically.
        with (
            atomic_path(targets["train"]) as t_train,
            atomic_path(targets["valid"]) as t_valid,
            atomic_path(targets["test"]) as t_test,
        ):
            for split, tmp in enumerate((t_train, t_valid, t_test)):
                # a full disk is named after the file being written, not after the innermost atomic_path
                with writing(targets[SPLITS[split]]), open(tmp, "wb") as handle:
                    for lines in buckets.lines(split):
                        order = rng.permutation(len(lines))
                        if lines:
                            handle.write(b"\n".join([lines[j] for j in order.tolist()]) + b"\n")

    _, group_sizes = np.unique(components, return_counts=True)
    summary = {
        "seed": options.seed,
        "fractions": options.fractions,
        "format": options.format,
        "records": n,
        "excluded_conflicting_records": excluded_conflicts,
        "groups": len(group_sizes),
        "largest_group": int(group_sizes.max()),
        "splits": {
            s: _split_stats(assignment == index, kinds, kind_names, chars, words) for index, s in enumerate(SPLITS)
        },
        "leakage_check": leakage,
        "test_questions": {
            "questions": len(labels),
            "by_support": {label: labels.count(label) for label in support.LABELS},
            "by_kind_and_support": {
                f"{kind_names[k]}/{label}": count
                for (k, label), count in sorted(_count_pairs(kinds[test_questions], labels).items())
            },
            "probe_fraction": options.probe_fraction,
            "unseen_fraction": options.unseen_fraction,
        },
        # probes put in validation (split.valid_probe_fraction): questions about facts training states
        "valid_probes": int(((roles == SPLITS.index("valid")) & (assignment == SPLITS.index("valid"))).sum()),
    }
    write_json_atomic(stats_path, summary)
    return summary


def _count_pairs(kinds: np.ndarray, labels: list[str]) -> dict:
    out: dict = {}
    for kind, label in zip(kinds.tolist(), labels):
        out[(kind, label)] = out.get((kind, label), 0) + 1
    return out


class _BucketFiles:
    """Temporary files per (split index, bucket), removed on exit whatever happens."""

    def __init__(self, out_dir: Path, n_buckets: int):
        self.dir = out_dir
        self.n = n_buckets
        # named after the split's output, so that split_jsonl finds them after a kill (textio.remove_leftovers)
        self.paths = {
            (s, b): out_dir / f".{name}.jsonl.bucket{b}.tmp" for s, name in enumerate(SPLITS) for b in range(n_buckets)
        }
        self.handles = {}

    def __enter__(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.handles = {key: open(path, "wb") for key, path in self.paths.items()}
        return self

    def write(self, key: tuple[int, int], block: bytes) -> None:
        self.handles[key].write(block)

    def lines(self, split: int):
        """Each bucket's lines, bucket by bucket. Split on newlines only: a text may hold
        other line separators (U+2028, U+0085) that JSON leaves as they are."""
        for handle in self.handles.values():
            handle.flush()
        for bucket in range(self.n):
            yield self.paths[(split, bucket)].read_bytes().split(b"\n")[:-1]

    def __exit__(self, *exc):
        for handle in self.handles.values():
            handle.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)
        return False
