"""The raw formats clean_text reads, by extension: which files are prose, which a results table
(CSV), which question/answer pairs (JSON), which paragraphs (JSONL); and the parsers of the three
structured ones, each returning the rows its format holds (a bad row or line is skipped, with a
warning that names it)."""

from __future__ import annotations

import csv
import io
import json

from .cleaning import CleaningOptions, clean_inline, clean_prose
from .input_warnings import InputWarnings

FORMATS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
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
# A pair that asks, in other words, the fact of another curated question names that question: the
# split then treats them as one fact (farense.records).
REWORDS_KEYS = ("reformula", "rewords")
PARAGRAPH_KEYS = ("texto", "text", "content", "paragrafo", "paragraph")


class SkipFile(Exception):
    """This file cannot be used; the message is the reason recorded in the stats."""


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


def parse_table(text: str, path: str, options: CleaningOptions, counts: dict, warnings: InputWarnings):
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


def parse_qa(text: str, path: str, options: CleaningOptions, counts: dict, warnings: InputWarnings):
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
        pair = {
            "question": clean_inline(question, options, counts),
            "answer": clean_inline(answer, options, counts),
            "item": i,
        }
        rewords = _pick(item, REWORDS_KEYS)
        if isinstance(rewords, str) and rewords.strip():
            pair["rewords"] = clean_inline(rewords, options, counts)
        elif rewords is not None:
            warnings.warn(path, f"item {i}: 'reformula' must name the question it rewords (a string): ignored")
        pairs.append(pair)
    return pairs


def parse_jsonl(text: str, path: str, warnings: InputWarnings) -> list[str]:
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


def document_text(
    fmt: str, raw_text: str, path: str, options: CleaningOptions, counts: dict, warnings: InputWarnings
) -> tuple[str, str]:
    """(cleaned text, payload) of a decoded raw file in format `fmt`: the payload is the parsed
    rows as JSON for the structured formats (what build_records reads), "" for prose."""
    payload = ""
    if fmt == "csv":
        rows = parse_table(raw_text, path, options, counts, warnings)
        payload = json.dumps(rows, ensure_ascii=False)
        names = TABLE_COLUMNS.keys()
        text = "\n\n".join("; ".join(f"{n}: {r[n]}" for n in names if r[n]) + "." for r in rows)
    elif fmt == "json":
        pairs = parse_qa(raw_text, path, options, counts, warnings)
        payload = json.dumps(pairs, ensure_ascii=False)
        text = "\n\n".join(f"Pergunta: {p['question']} Resposta: {p['answer']}" for p in pairs)
    elif fmt == "jsonl":
        paragraphs = [clean_prose(p, "txt", options, counts) for p in parse_jsonl(raw_text, path, warnings)]
        text = "\n\n".join(p for p in paragraphs if p)
    else:
        text = clean_prose(raw_text, fmt, options, counts)
    return text, payload
