"""Records rendered into the lines of the split files, in the chosen mlx-lm format, each validated
against the JSONL schema before it is written (split_jsonl runs this in its workers)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from . import support
from .records import exchange
from .split_lines import validator as line_validator
from .split_options import SplitOptions
from .textio import open_parquet

_RECORD_COLUMNS = ("record_id", "doc_id", "origin", "kind", "question", "answer", "text", "facts")


def render(record: dict, options: SplitOptions, support_label: str = "") -> dict:
    """One JSONL object in the chosen mlx-lm format, plus a `meta` object mlx-lm ignores: the
    record's identity and, for a question, the facts its answer states and (in the test split)
    its support label."""
    question, answer = exchange(record, options.continuation_prompt)
    if options.format == "text":
        obj = {"text": record["text"] if not record["question"] else f"Pergunta: {question}\nResposta: {answer}"}
    elif options.format == "completions":
        obj = {"prompt": question, "completion": answer}
    else:
        messages = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        obj = {"messages": messages}
    obj["meta"] = {
        "id": record["record_id"],
        "kind": record["kind"],
        "doc_id": record["doc_id"],
        "origin": record["origin"],
    }
    if record["question"]:
        obj["meta"]["facts"] = json.loads(record["facts"]).get("answer", []) if record.get("facts") else []
    if support_label:
        obj["meta"]["support"] = support_label
    return obj


_to_json = json.JSONEncoder(
    ensure_ascii=False
).encode  # json.dumps(obj, ensure_ascii=False), without a new encoder per call


def read_kept(records_path: str, group: int, keep: np.ndarray, columns: list[str]) -> pa.Table:
    """The kept rows of one row group, read where the work is done (a worker), so that texts
    do not travel between processes."""
    return open_parquet(records_path).read_row_group(group, columns=columns).filter(pa.array(keep))


def render_lines(
    job, records_path: str, options: SplitOptions, schema_path: str, labels: list[str]
) -> dict[tuple[int, int], bytes]:
    """The JSONL lines of a row group's kept records, validated, as one block of bytes per
    (split, bucket) that the records go to: the rendering work done in the workers. `job` is
    (row group, kept-rows mask, split index, bucket and support code of each kept record: 0 none,
    else 1 + an index into support.LABELS); `labels` name
    each split's file in errors."""
    group, keep, splits, buckets, labels_of = job
    validator = line_validator(schema_path)
    lines: dict[tuple[int, int], list[str]] = {}
    records = read_kept(records_path, group, keep, list(_RECORD_COLUMNS)).to_pylist()
    for record, split, bucket, label in zip(records, splits.tolist(), buckets.tolist(), labels_of.tolist()):
        obj = render(record, options, support.LABELS[label - 1] if label else "")
        validator.validate(obj, f"{labels[split]}: record {record['record_id']} ({record['origin']})")
        lines.setdefault((split, bucket), []).append(_to_json(obj))
    return {key: ("\n".join(block) + "\n").encode("utf-8") for key, block in lines.items()}
