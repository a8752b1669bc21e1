"""The split_jsonl stage: leakage-free, seeded train/valid/test JSONL files that mlx-lm reads.

Records are grouped before they are split: chunks of one document, questions with the same
normalised wording, all questions about one match, and any records whose texts are exact or
near duplicates end up in one group, and a group goes to one split. After assignment an
independent check looks for exact and near duplicates across splits; it must find none.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import fastjsonschema
import jsonschema
import numpy as np
import pyarrow.parquet as pq
import yaml

from .dedup import MinHasher, similar_pairs
from .errors import PipelineError
from .records import first_sentence
from .textio import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
FORMATS = ("text", "completions", "chat")


@dataclass(frozen=True)
class SplitOptions:
    seed: int = 42
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    near_duplicate_threshold: float = 0.7
    keep_conflicts: bool = False
    format: str = "chat"
    system_prompt: str = ""
    continuation_prompt: str = "Continua este texto sobre o SC Farense:"

    @property
    def fractions(self) -> dict[str, float]:
        return {"train": 1.0 - self.valid_fraction - self.test_fraction, "valid": self.valid_fraction, "test": self.test_fraction}


# ---------------------------------------------------------------- grouping


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_records(group_keys: list[str], texts_iter, threshold: float, hasher: MinHasher):
    """Component id per record: same group key, same normalised text, or near-duplicate text.

    `texts_iter` yields lists of texts in record order (batches), so texts need not all be in
    memory. Returns (component ids, exact keys, near-duplicate pairs (i, j) found).
    """
    n = len(group_keys)
    uf = UnionFind(n)
    first_with_key: dict[str, int] = {}
    for i, key in enumerate(group_keys):
        uf.union(first_with_key.setdefault(key, i), i)
    signatures, exact_keys = [], []
    for texts in texts_iter:
        batch_signatures, batch_keys = hasher.fingerprints(texts)
        signatures.append(batch_signatures)
        exact_keys += batch_keys.tolist()
    first_with_text: dict[str, int] = {}
    for i, key in enumerate(exact_keys):
        uf.union(first_with_text.setdefault(key, i), i)
    pairs, _ = similar_pairs(np.concatenate(signatures), threshold)
    for i, j in pairs.tolist():
        uf.union(i, j)
    return [uf.find(j) for j in range(n)], exact_keys, pairs


def assign_splits(components: list[int], kinds: list[str], options: SplitOptions) -> list[str]:
    """Seeded assignment of whole components to splits, stratified by kind.

    Components are shuffled, then each goes to the split furthest below its target share of
    that kind's records, so every kind is spread over train, valid and test in proportion.
    """
    members: dict[int, list[int]] = {}
    for i, component in enumerate(components):
        members.setdefault(component, []).append(i)
    strata: dict[str, list[int]] = {}
    for component, idx in members.items():
        kind_counts: dict[str, int] = {}
        for i in idx:
            kind_counts[kinds[i]] = kind_counts.get(kinds[i], 0) + 1
        dominant = max(sorted(kind_counts), key=kind_counts.get)
        strata.setdefault(dominant, []).append(component)
    rng = np.random.default_rng(options.seed)
    fractions = options.fractions
    assignment = [""] * len(components)
    for kind in sorted(strata):
        order = sorted(strata[kind])
        order = [order[j] for j in rng.permutation(len(order))]
        total = sum(len(members[c]) for c in order)
        filled = {s: 0 for s in SPLITS}
        for component in order:
            target = max(SPLITS, key=lambda s: (fractions[s] * total - filled[s]) if fractions[s] > 0 else -math.inf)
            filled[target] += len(members[component])
            for i in members[component]:
                assignment[i] = target
    return assignment


def leakage_check(assignment: list[str], group_keys: list[str], exact_keys: list[str], near_pairs: np.ndarray, threshold: float) -> dict:
    """Count what crosses splits: group keys, exact duplicate texts, near-duplicate pairs.

    Checks the final assignment itself, independently of how the groups were formed."""
    def crossing(keys):
        seen: dict[str, set] = {}
        for key, split in zip(keys, assignment):
            seen.setdefault(key, set()).add(split)
        return sum(1 for splits in seen.values() if len(splits) > 1)

    split_of = np.array([SPLITS.index(s) for s in assignment])
    across = near_pairs[split_of[near_pairs[:, 0]] != split_of[near_pairs[:, 1]]] if len(near_pairs) else near_pairs
    result = {
        "groups_across_splits": crossing(group_keys),
        "exact_duplicates_across_splits": crossing(exact_keys),
        "near_duplicate_pairs_across_splits": int(len(across)),
        "near_duplicate_pairs_checked": int(len(near_pairs)),
        "near_duplicate_threshold": threshold,
    }
    result["passed"] = not any((result["groups_across_splits"], result["exact_duplicates_across_splits"], len(across)))
    if len(across):
        result["examples"] = across[:10].tolist()
    return result


# ---------------------------------------------------------------- rendering and validation


def render(record: dict, options: SplitOptions) -> dict:
    """One JSONL object in the chosen mlx-lm format, plus a `meta` object mlx-lm ignores."""
    question, answer, text = record["question"], record["answer"], record["text"]
    if not question:  # a prose chunk: a continuation exercise in the dialogue formats
        head, tail = first_sentence(text.replace("\n", " "))
        if not tail:
            words = text.split()
            head, tail = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
        question, answer = f"{options.continuation_prompt} {head}".strip(), tail
    if options.format == "text":
        obj = {"text": text if not record["question"] else f"Pergunta: {question}\nResposta: {answer}"}
    elif options.format == "completions":
        obj = {"prompt": question, "completion": answer}
    else:
        messages = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        obj = {"messages": messages}
    obj["meta"] = {"id": record["record_id"], "kind": record["kind"], "doc_id": record["doc_id"], "origin": record["origin"]}
    return obj


class LineValidator:
    """Validates JSONL objects against a JSON Schema file.

    fastjsonschema (the schema compiled to Python) checks every line quickly; a line it
    rejects is checked again with jsonschema, whose messages name the failing field.
    """

    def __init__(self, schema_path: str | os.PathLike):
        with open(schema_path, encoding="utf-8") as handle:
            schema = yaml.safe_load(handle)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        self.schema_path = str(schema_path)
        self._explain = cls(schema)
        # Our schemas use only keywords that draft-07 shares with 2020-12.
        self._fast = fastjsonschema.compile({k: v for k, v in schema.items() if k != "$schema"})

    def validate(self, obj: dict, file_label: str, line_no: int) -> None:
        try:
            self._fast(obj)
            return
        except fastjsonschema.JsonSchemaException as fast_error:
            error = jsonschema.exceptions.best_match(self._explain.iter_errors(obj))
            if error is None:  # the two validators disagree: trust the slower, reference one
                log.warning("%s line %d: fastjsonschema rejected a line jsonschema accepts (%s)", file_label, line_no, fast_error)
                return
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise PipelineError(f"{file_label} line {line_no}: field '{where}': {error.message} (schema {self.schema_path})")


# ---------------------------------------------------------------- the stage

_BUCKET_BYTES = 32 * 1024 * 1024


def _lengths_summary(values: list[int]) -> dict:
    if not values:
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


def _histogram(values: list[int], bins: int = 20) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.asarray(values), bins=bins)
    return {"edges": [int(round(e)) for e in edges], "counts": [int(c) for c in counts]}


def split_jsonl(records_path, out_dir, stats_path, schema_path, options: SplitOptions, workers: int = 1) -> dict:
    if options.format not in FORMATS:
        raise PipelineError(f"records.format: '{options.format}' is not one of {', '.join(FORMATS)}")
    if options.fractions["train"] <= 0:
        raise PipelineError("split.valid_fraction + split.test_fraction must be below 1")
    validator = LineValidator(schema_path)
    parquet = pq.ParquetFile(records_path)
    meta = parquet.read(columns=["group_key", "kind", "conflict"]).to_pydict()
    # Conflicting answers stay out unless asked for: drop them before grouping.
    keep = [options.keep_conflicts or not c for c in meta["conflict"]]
    excluded_conflicts = keep.count(False)
    group_keys = [g for g, k in zip(meta["group_key"], keep) if k]
    kinds = [g for g, k in zip(meta["kind"], keep) if k]
    if not group_keys:
        raise PipelineError(f"{records_path} holds no usable record")

    def kept_batches(columns):
        row = 0
        for batch in parquet.iter_batches(columns=columns, batch_size=1024):
            rows = batch.to_pylist()
            yield [r for r, k in zip(rows, keep[row : row + len(rows)]) if k]
            row += len(rows)

    hasher = MinHasher()
    total_chars = 0

    def texts():
        nonlocal total_chars
        for rows in kept_batches(["text"]):
            batch = [r["text"] for r in rows]
            total_chars += sum(map(len, batch))
            yield batch

    components, exact_keys, near_pairs = group_records(group_keys, texts(), options.near_duplicate_threshold, hasher)
    assignment = assign_splits(components, kinds, options)
    for split, fraction in options.fractions.items():
        if fraction > 0 and split not in assignment:
            raise PipelineError(
                f"split '{split}' came out empty: only {len(set(components))} independent group(s) of records; "
                "lower split.valid_fraction/split.test_fraction or add raw data"
            )
    leakage = leakage_check(assignment, group_keys, exact_keys, near_pairs, options.near_duplicate_threshold)
    if not leakage["passed"]:
        raise PipelineError(f"leakage check failed (a bug in grouping): {leakage}")

    out_dir = Path(out_dir)
    rng = np.random.default_rng(options.seed + 1)
    n_buckets = max(1, math.ceil(total_chars / _BUCKET_BYTES))
    stats = {s: {"records": 0, "by_kind": {}, "chars": [], "words": []} for s in SPLITS}
    with _BucketFiles(out_dir, n_buckets) as buckets:
        # Pass 1: render each record into a random bucket of its split (bounded memory shuffle).
        position = 0
        for rows in kept_batches(list(_RECORD_COLUMNS)):
            for record in rows:
                split = assignment[position]
                position += 1
                obj = render(record, options)
                buckets.write(split, int(rng.integers(n_buckets)), json.dumps(obj, ensure_ascii=False))
                entry = stats[split]
                entry["records"] += 1
                entry["by_kind"][record["kind"]] = entry["by_kind"].get(record["kind"], 0) + 1
                entry["chars"].append(len(record["text"]))
                entry["words"].append(len(record["text"].split()))
        # Pass 2: shuffle each bucket, validate every line, write each split atomically.
        targets = {s: out_dir / f"{s}.jsonl" for s in SPLITS}
        with atomic_path(targets["train"]) as t_train, atomic_path(targets["valid"]) as t_valid, atomic_path(targets["test"]) as t_test:
            for split, tmp in zip(SPLITS, (t_train, t_valid, t_test)):
                label = str(targets[split])
                line_no = 0
                with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
                    for lines in buckets.read(split):
                        for j in rng.permutation(len(lines)):
                            line_no += 1
                            validator.validate(json.loads(lines[j]), label, line_no)
                            handle.write(lines[j] + "\n")

    summary = {
        "seed": options.seed,
        "fractions": options.fractions,
        "format": options.format,
        "records": len(group_keys),
        "excluded_conflicting_records": excluded_conflicts,
        "groups": len(set(components)),
        "largest_group": max(np.bincount(np.unique(components, return_inverse=True)[1])).item(),
        "splits": {
            s: {
                "records": stats[s]["records"],
                "share": round(stats[s]["records"] / len(group_keys), 4),
                "by_kind": stats[s]["by_kind"],
                "chars": _lengths_summary(stats[s]["chars"]),
                "words": _lengths_summary(stats[s]["words"]),
                "chars_histogram": _histogram(stats[s]["chars"]),
            }
            for s in SPLITS
        },
        "leakage_check": leakage,
    }
    write_json_atomic(stats_path, summary)
    return summary


_RECORD_COLUMNS = ("record_id", "doc_id", "origin", "kind", "question", "answer", "text")


class _BucketFiles:
    """Temporary files per (split, bucket), removed on exit whatever happens."""

    def __init__(self, out_dir: Path, n_buckets: int):
        self.dir = out_dir
        self.n = n_buckets
        self.paths = {(s, b): out_dir / f".{s}.bucket{b}.tmp" for s in SPLITS for b in range(n_buckets)}
        self.handles = {}

    def __enter__(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.handles = {key: open(path, "w", encoding="utf-8") for key, path in self.paths.items()}
        return self

    def write(self, split: str, bucket: int, line: str) -> None:
        self.handles[(split, bucket)].write(line + "\n")

    def read(self, split: str):
        for handle in self.handles.values():
            handle.flush()
        for bucket in range(self.n):
            with open(self.paths[(split, bucket)], encoding="utf-8") as handle:
                yield handle.read().splitlines()

    def __exit__(self, *exc):
        for handle in self.handles.values():
            handle.close()
        for path in self.paths.values():
            path.unlink(missing_ok=True)
        return False
