"""The clean_text stage: read every raw file, clean it, drop duplicate paragraphs, write the corpus.

Files are cleaned and their paragraphs fingerprinted in worker processes (`clean_file`),
results taken in file order; documents are written to Parquet in batches and signatures to
disk, so memory holds a few files in flight plus about 10 bytes per paragraph of index.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .cleaning import STEP_UNITS, STEPS, CleaningOptions
from .errors import PipelineError
from .input_warnings import InputWarnings
from .options import from_config
from .paragraph_dedup import DocumentFingerprints, ParagraphIndex, fingerprint_paragraphs
from .parallel import ordered_map, workers_for
from .raw_files import scan
from .raw_formats import FORMATS, KIND_OF_FORMAT, SkipFile, document_text
from .textio import (
    INTERMEDIATE_COMPRESSION,
    UndecodableError,
    atomic_path,
    decode_bytes,
    looks_binary,
    open_parquet,
    scratch_dir,
    write_json_atomic,
)

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("format", pa.string()),
        ("kind", pa.string()),
        ("encoding", pa.string()),
        ("raw_sha256", pa.string()),
        ("raw_bytes", pa.int64()),
        ("text", pa.string()),
        ("payload", pa.string()),
        ("n_paragraphs", pa.int64()),
        ("n_exact_duplicates", pa.int64()),
        ("n_near_duplicates", pa.int64()),
    ]
    + [(f"n_{step}", pa.int64()) for step in STEPS]
)


class CorpusError(PipelineError):
    """A problem that stops the stage: no raw directory, or nothing usable in it."""


@dataclass
class DedupOptions:
    exact: bool = True
    near: bool = True
    threshold: float = 0.5
    min_chars: int = 40

    from_config = classmethod(from_config)


def clean_text_options(section: dict) -> tuple[CleaningOptions, DedupOptions, bool]:
    """The `cleaning` config section (without threads) for its three users: the cleaning steps
    (CleaningOptions), paragraph deduplication (the `dedup_*` keys, DedupOptions) and the raw
    file scan (allow_outside_links)."""
    dedup = {key.removeprefix("dedup_"): value for key, value in section.items() if key.startswith("dedup_")}
    steps = {
        key: value for key, value in section.items() if not key.startswith("dedup_") and key != "allow_outside_links"
    }
    return CleaningOptions.from_config(steps), DedupOptions.from_config(dedup), section["allow_outside_links"]


@dataclass
class CleanReport:
    steps: dict = field(default_factory=lambda: {s: 0 for s in STEPS})
    files: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    warnings: InputWarnings = field(default_factory=lambda: InputWarnings(log))
    duplicates: list = field(default_factory=list)
    dropped_documents: list = field(default_factory=list)


def make_doc_id(relative_path: str) -> str:
    """Stable across content edits (so a fixed typo does not move a document between splits)."""
    stem = Path(relative_path).stem.lower()
    slug = "".join(c if c.isalnum() else "-" for c in stem).strip("-")[:40] or "doc"
    return f"{slug}-{hashlib.sha256(relative_path.encode('utf-8')).hexdigest()[:8]}"


def list_raw_files(raw_dir: str | os.PathLike, allow_outside_links: bool = False) -> tuple[list[Path], list[dict]]:
    """(the files to read, the entries skipped with their reason): farense.raw_files.scan."""
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise CorpusError(f"raw_dir '{raw_dir}' does not exist or is not a directory (config key: raw_dir)")
    files, skipped = scan(raw, allow_outside_links)
    if not files:
        raise CorpusError(
            f"raw_dir '{raw_dir}' contains no files to read (config key: raw_dir; {len(skipped)} entries skipped)"
        )
    return files, skipped


def check_unchanged(raw_dir: Path, read: dict[str, str]) -> None:
    """Raise when a raw file's bytes now differ from those the stage read (`read`: relative
    path -> sha256 of the bytes read): a file edited during the stage would leave a corpus that
    mixes two versions, and a lineage entry hashing the new one."""

    def sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    changed = [relative for relative, digest in read.items() if sha256(raw_dir / relative) != digest]
    if changed:
        raise CorpusError(
            f"raw file(s) changed while clean_text read them: {', '.join(changed[:10])}; nothing was written, run again"
        )


def read_document(path: Path, raw_dir: Path, options: CleaningOptions, warnings: InputWarnings) -> dict:
    """Read and clean one raw file into a corpus row (before paragraph deduplication)."""
    relative = path.relative_to(raw_dir).as_posix()
    fmt = FORMATS.get(path.suffix.lower())
    if path.name.startswith("."):
        raise SkipFile("hidden file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SkipFile(f"unreadable: {err.strerror or err}") from err
    if not data.strip():
        raise SkipFile("empty file")
    if looks_binary(data):
        raise SkipFile("binary content (NUL bytes), not text")
    if fmt is None:
        raise SkipFile(f"unsupported extension '{path.suffix}' (supported: {', '.join(sorted(FORMATS))})")
    try:
        raw_text, encoding = decode_bytes(data)
    except UndecodableError as err:
        raise SkipFile(str(err)) from err
    raw_text = raw_text.lstrip("\ufeff")
    counts = {step: 0 for step in STEPS}
    text, payload = document_text(fmt, raw_text, relative, options, counts, warnings)
    if not text.strip():
        raise SkipFile("no text left after cleaning")
    return {
        "doc_id": make_doc_id(relative),
        "source_path": relative,
        "format": fmt,
        "kind": KIND_OF_FORMAT[fmt],
        "encoding": encoding,
        "raw_sha256": hashlib.sha256(data).hexdigest(),
        "raw_bytes": len(data),
        "text": text,
        "payload": payload,
        "chars_in": len(raw_text),
        **{f"n_{step}": n for step, n in counts.items()},
    }


@dataclass
class CleanedFile:
    """What the stage keeps of one cleaned file; its text went to a pass-1 part file."""

    relative: str
    skipped: str | None = None
    warnings: list = field(default_factory=list)
    stats: dict | None = None
    fingerprints: DocumentFingerprints | None = None
    sha256: str | None = None  # of the bytes read


# Files are cleaned in tasks of consecutive files of about this many bytes: enough work per
# task to share out, few enough part files.
TASK_BYTES = 4_000_000


def _tasks(files: list[Path]) -> list[tuple[int, list[Path]]]:
    tasks, current, size = [], [], 0
    for path in files:
        current.append(path)
        size += path.stat().st_size
        if size >= TASK_BYTES:
            tasks.append(current)
            current, size = [], 0
    if current:
        tasks.append(current)
    return list(enumerate(tasks))


def _part_path(parts_dir: Path, task: int) -> Path:
    return parts_dir / f"part-{task:06d}.parquet"


def clean_files(
    task: tuple[int, list[Path]], raw_dir: Path, parts_dir: Path, options: CleaningOptions, dedup_min_chars: int | None
) -> list[CleanedFile]:
    """Clean a task's raw files: their rows go to the task's part file, and what the stage
    keeps comes back (per file: stats, warnings and, for prose when deduplicating
    (`dedup_min_chars` set), its paragraphs' fingerprints). Runs in a worker process, so
    texts never travel between processes."""
    number, paths = task
    results, rows = [], []
    for path in paths:
        relative = path.relative_to(raw_dir).as_posix()
        warnings = InputWarnings()
        try:
            row = read_document(path, raw_dir, options, warnings)
        except SkipFile as reason:
            results.append(CleanedFile(relative, skipped=str(reason), warnings=warnings))
            continue
        fingerprints = None
        # Only prose is deduplicated; question and table files have their own checks.
        if dedup_min_chars is not None and row["kind"] == "prose":
            fingerprints = fingerprint_paragraphs(row["text"].split("\n\n"), dedup_min_chars)
        results.append(CleanedFile(relative, None, warnings, _file_stats(row), fingerprints, row["raw_sha256"]))
        rows.append(row)
    if rows:
        pq.write_table(
            pa.Table.from_pylist(rows, schema=SCHEMA),
            _part_path(parts_dir, number),
            compression=INTERMEDIATE_COMPRESSION,
        )
    return results


def clean_corpus(
    raw_dir,
    corpus_path,
    stats_path,
    options: CleaningOptions,
    dedup: DedupOptions,
    workers: int = 1,
    allow_outside_links: bool = False,
) -> CleanReport:
    """Run the whole stage. Raises CorpusError when nothing usable is found.

    Pass 1 cleans the files (in `workers` processes), each task writing its documents to a
    part file, while the stage collects paragraph fingerprints; pass 2 decides which
    paragraphs are duplicates; pass 3 copies the documents, part by part, into the output
    without them. The output is the same whatever the number of workers.
    """
    raw_dir = Path(raw_dir)
    files, not_read = list_raw_files(raw_dir, allow_outside_links)
    report = CleanReport()
    for entry in not_read:
        report.skipped.append(entry)
        log.warning("skipped %s: %s", entry["path"], entry["reason"])
    read: dict[str, str] = {}
    deduplicate = dedup.exact or dedup.near
    workers = workers_for(sum(p.stat().st_size for p in files), workers)
    with (
        atomic_path(corpus_path, ".parquet") as out,
        scratch_dir(Path(corpus_path).parent, Path(corpus_path).name) as parts_dir,
        ParagraphIndex(parts_dir, dedup.threshold) as index,
    ):
        work = partial(
            clean_files,
            raw_dir=raw_dir,
            parts_dir=parts_dir,
            options=options,
            dedup_min_chars=dedup.min_chars if deduplicate else None,
        )
        documents, parts = 0, []
        tasks = _tasks(files)
        for (number, _), results in zip(tasks, ordered_map(work, tasks, workers)):
            for cleaned in results:
                report.warnings.extend_logged(cleaned.warnings)
                if cleaned.stats is None:
                    report.skipped.append({"path": cleaned.relative, "reason": cleaned.skipped})
                    log.warning("skipped %s: %s", cleaned.relative, cleaned.skipped)
                    continue
                if cleaned.fingerprints is not None:
                    index.add_document(documents, cleaned.fingerprints)
                report.files[cleaned.relative] = cleaned.stats
                read[cleaned.relative] = cleaned.sha256
                for step, n in cleaned.stats["steps"].items():
                    report.steps[step] += n
                documents += 1
            if any(cleaned.stats is not None for cleaned in results):
                parts.append(_part_path(parts_dir, number))
        if documents == 0:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in report.skipped[:10])
            raise CorpusError(
                f"no usable file in raw_dir '{raw_dir}' ({len(files) + len(not_read)} file(s) seen; {reasons})"
            )
        drops = index.decide(dedup.exact, dedup.near, workers)
        written = _write_without_duplicates(parts, out, index, drops, report)
        check_unchanged(raw_dir, read)  # inside the atomic write: a changed file leaves no corpus
    write_json_atomic(stats_path, _stats_json(raw_dir, len(files) + len(not_read), written, report, options, dedup))
    return report


def _write_without_duplicates(
    parts: list[Path], out: Path, index: ParagraphIndex, drops: dict, report: CleanReport
) -> int:
    """Copy documents from the pass-1 parts, in order, to the output, dropping duplicate
    paragraphs (pass 3).

    Only the text and the paragraph counts change: they are rebuilt column by column, the
    other columns pass through as they are, and a document without drops is not split."""
    dropped = np.fromiter(drops, dtype=np.int64, count=len(drops))
    docs_with_drops = set(index.docs_of(dropped).tolist())
    sources: list[str] = []  # every document's path so far, by document number
    written = 0
    with pq.ParquetWriter(out, SCHEMA, compression=INTERMEDIATE_COMPRESSION) as writer:
        for record_batch in (batch for part in parts for batch in open_parquet(part).iter_batches(batch_size=16)):
            columns: dict[str, list] = {
                "text": [],
                "n_paragraphs": [],
                "n_exact_duplicates": [],
                "n_near_duplicates": [],
            }
            for path, text in zip(
                record_batch.column("source_path").to_pylist(), record_batch.column("text").to_pylist()
            ):
                doc = len(sources)
                sources.append(path)
                counts = {"exact": 0, "near": 0}
                if doc in docs_with_drops:
                    text = _without_dropped(text, index.first_of_doc[doc], drops, counts, path, sources, index, report)
                _record_document(report, path, text, counts, columns)
            table = pa.Table.from_batches([record_batch])
            for name, values in columns.items():
                table = table.set_column(
                    SCHEMA.get_field_index(name), SCHEMA.field(name), pa.array(values, type=SCHEMA.field(name).type)
                )
            table = table.filter(pa.array([bool(text) for text in columns["text"]]))
            if table.num_rows:
                writer.write_table(table)
                written += table.num_rows
    return written


def _without_dropped(
    text: str,
    first: int,
    drops: dict,
    counts: dict,
    path: str,
    sources: list[str],
    index: ParagraphIndex,
    report: CleanReport,
) -> str:
    """A document's text without its dropped paragraphs (`first`: the index number of its first
    paragraph); counts them by kind, and keeps the first 200 as examples for the report."""
    kept = []
    for offset, paragraph in enumerate(text.split("\n\n")):
        drop = drops.get(first + offset)
        if drop is None:
            kept.append(paragraph)
            continue
        counts[drop.kind] += 1
        if len(report.duplicates) < 200:  # a sample for the report; totals are counted
            report.duplicates.append(
                {
                    "kind": drop.kind,
                    "path": path,
                    "duplicate_of": sources[int(index.docs_of(np.array([drop.duplicate_of]))[0])],
                    "similarity": round(drop.similarity, 3),
                    "text_start": paragraph[:80],
                }
            )
    return "\n\n".join(kept)


def _record_document(report: CleanReport, path: str, text: str, counts: dict, columns: dict[str, list]) -> None:
    """A document's figures after deduplication, in the report and in the columns to write."""
    paragraphs = text.count("\n\n") + 1 if text else 0
    report.files[path].update(
        chars_out=len(text),
        paragraphs_kept=paragraphs,
        exact_duplicates_dropped=counts["exact"],
        near_duplicates_dropped=counts["near"],
    )
    if not text:
        report.dropped_documents.append({"path": path, "reason": "every paragraph duplicates earlier files"})
    columns["text"].append(text)
    columns["n_paragraphs"].append(paragraphs)
    columns["n_exact_duplicates"].append(counts["exact"])
    columns["n_near_duplicates"].append(counts["near"])


def _file_stats(row: dict) -> dict:
    return {
        "doc_id": row["doc_id"],
        "format": row["format"],
        "encoding": row["encoding"],
        "bytes": row["raw_bytes"],
        "chars_in": row["chars_in"],
        "chars_out": len(row["text"]),
        "paragraphs_kept": 0,
        "exact_duplicates_dropped": 0,
        "near_duplicates_dropped": 0,
        "steps": {step: row[f"n_{step}"] for step in STEPS if row[f"n_{step}"]},
    }


def _stats_json(raw_dir, files_seen: int, written, report: CleanReport, options, dedup) -> dict:
    from dataclasses import asdict

    return {
        "raw_dir": str(raw_dir),
        "files_seen": files_seen,
        "documents_written": written,
        "files_skipped": report.skipped,
        "documents_dropped": report.dropped_documents,
        "warnings": report.warnings,
        "steps": report.steps,
        "step_units": dict(STEP_UNITS),
        "dedup": {
            "exact_paragraphs_dropped": sum(f["exact_duplicates_dropped"] for f in report.files.values()),
            "near_paragraphs_dropped": sum(f["near_duplicates_dropped"] for f in report.files.values()),
            "examples": report.duplicates,
        },
        "files": report.files,
        "options": {"cleaning": asdict(options), "dedup": asdict(dedup)},
    }
