"""The clean_text stage: read every raw file, clean it, drop duplicate paragraphs, write the corpus.

Files are cleaned and their paragraphs fingerprinted in worker processes (`clean_file`),
results taken in file order; documents are written to Parquet in batches and signatures to
disk, so memory holds a few files in flight plus about 10 bytes per paragraph of index.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .cleaning import STEPS, CleaningOptions, clean_inline, clean_prose
from .errors import PipelineError
from .paragraph_dedup import DocumentFingerprints, ParagraphIndex, fingerprint_paragraphs
from .parallel import ordered_map, workers_for
from .raw_files import scan
from .textio import INTERMEDIATE_COMPRESSION, UndecodableError, atomic_path, decode_bytes, looks_binary, open_parquet, scratch_dir, write_json_atomic

log = logging.getLogger(__name__)

FORMATS = {
    ".txt": "txt", ".text": "txt",
    ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}
KIND_OF_FORMAT = {"txt": "prose", "md": "prose", "html": "prose", "jsonl": "prose", "csv": "table", "json": "qa"}

# Column names accepted for each field, in Portuguese and English (compared case- and accent-insensitively).
TABLE_COLUMNS = {
    "date": ("data", "date"),
    "season": ("epoca", "season", "temporada"),
    "competition": ("competicao", "competition", "prova"),
    "home": ("casa", "home", "visitado", "equipa da casa"),
    "away": ("fora", "away", "visitante"),
    "score": ("resultado", "score", "result"),
}
QUESTION_KEYS = ("pergunta", "question", "q")
ANSWER_KEYS = ("resposta", "answer", "a")
PARAGRAPH_KEYS = ("texto", "text", "content", "paragrafo", "paragraph")

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


class SkipFile(Exception):
    """This file cannot be used; the message is the reason recorded in the stats."""


@dataclass
class DedupOptions:
    exact: bool = True
    near: bool = True
    threshold: float = 0.5
    min_chars: int = 40


@dataclass
class CleanReport:
    steps: dict = field(default_factory=lambda: {s: 0 for s in STEPS})
    files: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    dropped_documents: list = field(default_factory=list)

    def warn(self, path: str, message: str, line: int | None = None) -> None:
        entry = {"path": path, "message": message} if line is None else {"path": path, "line": line, "message": message}
        self.warnings.append(entry)
        log.warning("%s%s: %s", path, "" if line is None else f":{line}", message)


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
        raise CorpusError(f"raw_dir '{raw_dir}' contains no files to read (config key: raw_dir; {len(skipped)} entries skipped)")
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
        raise CorpusError(f"raw file(s) changed while clean_text read them: {', '.join(changed[:10])}; nothing was written, run again")


def _fold(name: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _pick(obj: dict, keys: tuple[str, ...]):
    folded = {_fold(str(k)): v for k, v in obj.items()}
    for key in keys:
        if key in folded:
            return folded[key]
    return None


def _parse_table(text: str, path: str, options: CleaningOptions, counts: dict, warnings: FileWarnings):
    lines = text.split("\n")
    header = lines[0] if lines else ""
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = list(reader)
    if not rows:
        raise SkipFile("CSV file has no header row")
    columns = [_fold(clean_inline(c, options, counts)) for c in rows[0]]
    index = {}
    for field_name, aliases in TABLE_COLUMNS.items():
        for i, column in enumerate(columns):
            if column in aliases:
                index[field_name] = i
                break
    missing = [f for f in TABLE_COLUMNS if f not in index]
    if missing:
        raise SkipFile(f"CSV header lacks column(s) {missing}; expected e.g. Data;Época;Competição;Casa;Fora;Resultado")
    records = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(columns):
            warnings.warn(path, f"row has {len(row)} cells, header has {len(columns)}: skipped", line_no)
            continue
        record = {f: clean_inline(row[i], options, counts) for f, i in index.items()}
        record["line"] = line_no
        records.append(record)
    return records


def _parse_qa(text: str, path: str, options: CleaningOptions, counts: dict, warnings: FileWarnings):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SkipFile(f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise SkipFile("JSON object must hold exactly one list of question/answer objects")
        data = lists[0]
    if not isinstance(data, list):
        raise SkipFile("JSON must be a list of question/answer objects, or an object holding one")
    pairs = []
    for i, item in enumerate(data):
        question = _pick(item, QUESTION_KEYS) if isinstance(item, dict) else None
        answer = _pick(item, ANSWER_KEYS) if isinstance(item, dict) else None
        if not isinstance(question, str) or not isinstance(answer, str) or not question.strip() or not answer.strip():
            warnings.warn(path, f"item {i} has no 'pergunta'/'question' and 'resposta'/'answer' strings: skipped")
            continue
        pairs.append({"question": clean_inline(question, options, counts), "answer": clean_inline(answer, options, counts), "item": i})
    return pairs


def _parse_jsonl(text: str, path: str, warnings: FileWarnings) -> list[str]:
    paragraphs = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            warnings.warn(path, f"invalid JSON ({err.msg}): line skipped", line_no)
            continue
        value = _pick(obj, PARAGRAPH_KEYS) if isinstance(obj, dict) else obj if isinstance(obj, str) else None
        if not isinstance(value, str):
            warnings.warn(path, "no 'texto'/'text' string in this line: skipped", line_no)
            continue
        paragraphs.append(value)
    return paragraphs


def read_document(path: Path, raw_dir: Path, options: CleaningOptions, warnings: FileWarnings) -> dict:
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
    payload = ""
    if fmt == "csv":
        rows = _parse_table(raw_text, relative, options, counts, warnings)
        payload = json.dumps(rows, ensure_ascii=False)
        names = TABLE_COLUMNS.keys()
        text = "\n\n".join("; ".join(f"{n}: {r[n]}" for n in names if r[n]) + "." for r in rows)
    elif fmt == "json":
        pairs = _parse_qa(raw_text, relative, options, counts, warnings)
        payload = json.dumps(pairs, ensure_ascii=False)
        text = "\n\n".join(f"Pergunta: {p['question']} Resposta: {p['answer']}" for p in pairs)
    elif fmt == "jsonl":
        paragraphs = [clean_prose(p, "txt", options, counts) for p in _parse_jsonl(raw_text, relative, warnings)]
        text = "\n\n".join(p for p in paragraphs if p)
    else:
        text = clean_prose(raw_text, fmt, options, counts)
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


class FileWarnings(list):
    """Warnings about one file, collected where it is cleaned (a worker process) and logged by
    the stage when the file's result comes back in order."""

    def warn(self, path: str, message: str, line: int | None = None) -> None:
        self.append({"path": path, "message": message} if line is None else {"path": path, "line": line, "message": message})


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


def clean_files(task: tuple[int, list[Path]], raw_dir: Path, parts_dir: Path, options: CleaningOptions, dedup_min_chars: int | None) -> list[CleanedFile]:
    """Clean a task's raw files: their rows go to the task's part file, and what the stage
    keeps comes back (per file: stats, warnings and, for prose when deduplicating
    (`dedup_min_chars` set), its paragraphs' fingerprints). Runs in a worker process, so
    texts never travel between processes."""
    number, paths = task
    results, rows = [], []
    for path in paths:
        relative = path.relative_to(raw_dir).as_posix()
        warnings = FileWarnings()
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
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), _part_path(parts_dir, number), compression=INTERMEDIATE_COMPRESSION)
    return results


def clean_corpus(raw_dir, corpus_path, stats_path, options: CleaningOptions, dedup: DedupOptions, workers: int = 1,
                 allow_outside_links: bool = False) -> CleanReport:
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
        work = partial(clean_files, raw_dir=raw_dir, parts_dir=parts_dir, options=options, dedup_min_chars=dedup.min_chars if deduplicate else None)
        documents, parts = 0, []
        tasks = _tasks(files)
        for (number, _), results in zip(tasks, ordered_map(work, tasks, workers)):
            for cleaned in results:
                for warning in cleaned.warnings:
                    report.warn(**warning)
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
            raise CorpusError(f"no usable file in raw_dir '{raw_dir}' ({len(files) + len(not_read)} file(s) seen; {reasons})")
        drops = index.decide(dedup.exact, dedup.near, workers)
        written = _write_without_duplicates(parts, out, index, drops, report)
        check_unchanged(raw_dir, read)  # inside the atomic write: a changed file leaves no corpus
    write_json_atomic(stats_path, _stats_json(raw_dir, len(files) + len(not_read), written, report, options, dedup))
    return report


def _write_without_duplicates(parts: list[Path], out: Path, index: ParagraphIndex, drops: dict, report: CleanReport) -> int:
    """Copy documents from the pass-1 parts, in order, to the output, dropping duplicate
    paragraphs (pass 3).

    Only the text and the paragraph counts change: they are rebuilt column by column, the
    other columns pass through as they are, and a document without drops is not split."""
    first_paragraph = index.first_of_doc
    dropped = np.fromiter(drops, dtype=np.int64, count=len(drops))
    docs_with_drops = set(index.docs_of(dropped).tolist())
    sources: list[str] = []
    written = 0
    with pq.ParquetWriter(out, SCHEMA, compression=INTERMEDIATE_COMPRESSION) as writer:
        doc = 0
        for record_batch in (batch for part in parts for batch in open_parquet(part).iter_batches(batch_size=16)):
            texts, n_paragraphs, n_exact, n_near, keep = [], [], [], [], []
            for path, text in zip(record_batch.column("source_path").to_pylist(), record_batch.column("text").to_pylist()):
                sources.append(path)
                counts = {"exact": 0, "near": 0}
                if doc in docs_with_drops:
                    base, kept = first_paragraph[doc], []
                    for offset, paragraph in enumerate(text.split("\n\n")):
                        drop = drops.get(base + offset)
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
                    text = "\n\n".join(kept)
                doc += 1
                paragraphs = text.count("\n\n") + 1 if text else 0
                report.files[path].update(
                    chars_out=len(text),
                    paragraphs_kept=paragraphs,
                    exact_duplicates_dropped=counts["exact"],
                    near_duplicates_dropped=counts["near"],
                )
                if not text:
                    report.dropped_documents.append({"path": path, "reason": "every paragraph duplicates earlier files"})
                texts.append(text)
                n_paragraphs.append(paragraphs)
                n_exact.append(counts["exact"])
                n_near.append(counts["near"])
                keep.append(bool(text))
            table = pa.Table.from_batches([record_batch])
            for name, values in (("text", texts), ("n_paragraphs", n_paragraphs), ("n_exact_duplicates", n_exact), ("n_near_duplicates", n_near)):
                table = table.set_column(SCHEMA.get_field_index(name), SCHEMA.field(name), pa.array(values, type=SCHEMA.field(name).type))
            table = table.filter(pa.array(keep))
            if table.num_rows:
                writer.write_table(table)
                written += table.num_rows
    return written


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
        "step_units": {
            "line_endings": "CR/CRLF/form-feed line breaks converted",
            "mojibake": "lines repaired",
            "html": "tags removed",
            "markdown": "markup constructs removed",
            "soft_hyphens": "soft hyphens removed",
            "control_chars": "control or zero-width characters removed",
            "page_numbers": "page-number lines removed",
            "running_headers": "running header/footer lines removed",
            "stray_bullets": "stray bullets removed",
            "hyphenation": "line-break hyphenations joined",
            "wrapped_lines": "line breaks joined into paragraphs",
            "emoji": "emoji characters removed",
            "whitespace": "spacing fixes (runs of spaces, tabs, odd spaces, line edges, blank runs)",
            "unicode_nfc": "characters recomposed to NFC",
        },
        "dedup": {
            "exact_paragraphs_dropped": sum(f["exact_duplicates_dropped"] for f in report.files.values()),
            "near_paragraphs_dropped": sum(f["near_duplicates_dropped"] for f in report.files.values()),
            "examples": report.duplicates,
        },
        "files": report.files,
        "options": {"cleaning": asdict(options), "dedup": asdict(dedup)},
    }
