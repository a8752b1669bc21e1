"""The build_records stage: training records from the cleaned corpus.

Four kinds of record, each with the doc_id it came from:
- chunk: a window of whole sentences of a prose document;
- qa_curated: a question/answer pair from a curated JSON file;
- qa_table: questions generated from the match-results table, answered from Farense's side;
- table_text: a row of the results table written as prose, in several wordings: the same facts
  in other forms than the questions, so that a model can learn a result it is then asked about
  (a fact seen in several phrasings is learnt far better than one seen once: Allen-Zhu and Li,
  "Physics of Language Models, Part 3.1").
Records with the same normalised question but different answers are marked `conflict`.

Each question record carries the facts its answer states (farense.facts) and a `fact_key`: the
match, or the curated question. One question per fact is its `probe`, the question the split may
hold out for the test while the fact's other records train (split_jsonl).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import facts as factlib
from .errors import PipelineError
from .input_warnings import InputWarnings
from .options import from_config
from .parallel import ordered_map, workers_for
from .textio import INTERMEDIATE_COMPRESSION, atomic_path, open_parquet, parquet_column_bytes, write_json_atomic

log = logging.getLogger(__name__)

RECORD_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("origin", pa.string()),
        ("kind", pa.string()),
        ("group_key", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("text", pa.string()),
        ("question_key", pa.string()),
        ("conflict", pa.bool_()),
        ("fact_key", pa.string()),
        ("probe", pa.bool_()),
        ("facts", pa.string()),
    ]
)

TABLE_TEMPLATES = ("result", "venue", "competition", "ending")
TABLE_WORDINGS = 3  # prose wordings of a result that table_text can write (records.table_statements)


@dataclass(frozen=True)
class RecordOptions:
    chunk_size_chars: int = 1000
    chunk_overlap_chars: int = 200
    min_chunk_chars: int = 80
    include_chunks: bool = True
    include_curated_qa: bool = True
    include_table_qa: bool = True
    table_templates: tuple[str, ...] = ("result", "venue")
    table_statements: int = 2
    club_name: str = "Farense"

    from_config = classmethod(from_config)


@dataclass
class RecordReport:
    counts: dict = field(default_factory=dict)
    warnings: InputWarnings = field(default_factory=lambda: InputWarnings(log))  # logged by the worker that finds them
    conflicts: list = field(default_factory=list)
    duplicates_dropped: int = 0


# ---------------------------------------------------------------- normalisation


def fold(text: str) -> str:
    """Case-, accent-, punctuation- and spacing-insensitive form of a short text."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", stripped))


# ---------------------------------------------------------------- sentences and chunks

_ABBREVIATIONS = {
    "sr",
    "sra",
    "srs",
    "dr",
    "dra",
    "drs",
    "prof",
    "profa",
    "eng",
    "arq",
    "av",
    "n",
    "nº",
    "n.º",
    "no",
    "p",
    "pp",
    "pag",
    "pág",
    "sec",
    "séc",
    "vol",
    "cap",
    "cf",
    "vs",
    "ex",
    "st",
    "sto",
    "sta",
    "fig",
    "tel",
    "jan",
    "fev",
    "mar",
    "abr",
    "mai",
    "jun",
    "jul",
    "ago",
    "set",
    "out",
    "nov",
    "dez",
    "s.c",
    "c.f",
    "u.d",
    "e.g",
    "i.e",
}
# A boundary is punctuation, optional closing quotes or brackets, spaces, then what can start a
# sentence. The empty group `plain` matches when the boundary cannot follow an abbreviation or
# an initial (it is not a full stop, or the six characters before it are one word that neither
# could be), so most boundaries need no look at the word before them.
_BOUNDARY = re.compile(
    r"([.!?…](?:(?:(?<=[^\s(«\"“]{6}.)|(?<!\.))(?P<plain>))?[.!?…]*[»\"”')\]]*)\s+(?=[«\"“(\[]?[A-ZÀ-ÖØ-Ý0-9])"
)


def _ends_with_abbreviation(before: str) -> bool:
    """Whether the last word of `before` is an abbreviation or an initial."""
    words = before.rsplit(None, 1)
    token = words[-1].lower().lstrip('(«"“') if words else ""
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def _boundaries(paragraph: str):
    """(end of sentence, start of next) for each real sentence boundary."""
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        stop = match.start(1)
        if match.group("plain") is None and _ends_with_abbreviation(paragraph[max(start, stop - 40) : stop]):
            continue
        start = match.end()
        yield match.end(1), start


def first_sentence(text: str) -> tuple[str, str]:
    """(first sentence, the rest); the rest is empty for a single sentence."""
    for end, next_start in _boundaries(text):
        return text[:end].strip(), text[next_start:].strip()
    return text.strip(), ""


def continuation(text: str) -> tuple[str, str]:
    """A prose record as a continuation exercise: (what is given, what is to be written). The
    first sentence is given; a single sentence is cut in half by words."""
    head, tail = first_sentence(text.replace("\n", " "))
    if not tail:
        words = text.split()
        head, tail = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    return head, tail


def exchange(record: dict, continuation_prompt: str) -> tuple[str, str]:
    """(question, answer) a record is trained as: a question record's own; for a prose chunk, a
    continuation exercise: the prompt and the chunk's first sentence, then the rest to write."""
    if record["question"]:
        return record["question"], record["answer"]
    head, tail = continuation(record["text"])
    return f"{continuation_prompt} {head}".strip(), tail


def split_sentences(paragraph: str) -> list[str]:
    """Split on ., ! or ? followed by a capital, except after abbreviations and initials."""
    sentences, start = [], 0
    for end, next_start in _boundaries(paragraph):
        sentences.append(paragraph[start:end].strip())
        start = next_start
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _hard_split(sentence: str, size: int) -> list[str]:
    """A sentence longer than a chunk is cut at word boundaries (rare: tables, lists)."""
    pieces, current = [], ""
    for word in sentence.split():
        if current and len(current) + 1 + len(word) > size:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def chunk_document(text: str, size: int, overlap: int) -> list[str]:
    """Windows of whole sentences up to `size` characters; consecutive windows share trailing
    sentences up to `overlap` characters. Paragraph breaks inside a chunk stay as newlines."""
    paragraphs = []  # the sentences (pieces of over-long sentences) of each paragraph
    for paragraph in text.split("\n\n"):
        if paragraph.strip():
            sentences = split_sentences(paragraph)
            if max(map(len, sentences)) > size:
                sentences = [piece for s in sentences for piece in (_hard_split(s, size) if len(s) > size else [s])]
            paragraphs.append(sentences)
    # The document as chunks render it: sentences joined by a space, paragraphs by a newline.
    # Every separator is one character, so a window of units is one slice of it.
    joined = "\n".join(" ".join(sentences) for sentences in paragraphs)
    lengths = [len(unit) for sentences in paragraphs for unit in sentences]
    before = list(itertools.accumulate(lengths, initial=0))  # characters of the units before unit k
    offset = [chars + k for k, chars in enumerate(before)]  # ...and of their separators: where unit k starts
    chunks, start, n = [], 0, len(lengths)
    while start < n:
        # As many units as fit in `size` (always at least one).
        end = min(n, max(start + 1, bisect.bisect_right(offset, offset[start] + size + 1) - 1))
        chunks.append(joined[offset[start] : offset[end] - 1])
        if end >= n:
            break
        # Step back over trailing units that fit in the overlap, always moving forward.
        start = max(start + 1, min(end, bisect.bisect_left(before, before[end] - overlap)))
    return chunks


# ---------------------------------------------------------------- questions from the results table

_SCORE = re.compile(r"^\s*(\d{1,2})\s*[-–x:]\s*(\d{1,2})\s*(.*?)\s*$")


def parse_date(value: str) -> date | None:
    value = value.strip()
    for pattern, order in ((r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", "dmy"), (r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd")):
        m = re.fullmatch(pattern, value)
        if m:
            a, b, c = (int(g) for g in m.groups())
            day, month, year = (a, b, c) if order == "dmy" else (c, b, a)
            try:
                return date(year, month, day)
            except ValueError:
                return None
    return None


def date_pt(d: date) -> str:
    return f"{d.day} de {factlib.MONTH_NAMES[d.month - 1]} de {d.year}"


@dataclass(frozen=True)
class Match:
    """One results row seen from the club's side."""

    club: str
    opponent: str
    at_home: bool
    ours: int
    theirs: int
    note: str
    when: date
    competition: str
    season: str

    @property
    def outcome(self) -> str:
        return "win" if self.ours > self.theirs else "loss" if self.ours < self.theirs else "draw"

    @property
    def score(self) -> str:
        return f"{self.ours}-{self.theirs}"

    def facts(self, *kinds: str) -> list[dict]:
        values = {
            "outcome": self.outcome,
            "score": self.score,
            "venue": "home" if self.at_home else "away",
            "date": self.when.isoformat(),
            "competition": self.competition,
            "season": self.season,
        }
        return [factlib.fact(kind, values[kind]) for kind in kinds if values[kind]]


def parse_match(row: dict, club: str) -> Match:
    """A results row as a Match. Raises ValueError with the reason to skip it."""
    when = parse_date(row.get("date", ""))
    if when is None:
        raise ValueError(f"date '{row.get('date', '')}' is not dd/mm/yyyy or yyyy-mm-dd")
    score = _SCORE.match(row.get("score", ""))
    if score is None:
        raise ValueError(f"score '{row.get('score', '')}' is not a result like 2-1")
    home, away = row["home"].strip(), row["away"].strip()
    club_key = fold(club)
    at_home, away_game = club_key in fold(home), club_key in fold(away)
    if at_home == away_game:
        raise ValueError(f"{club} is {'both teams' if at_home else 'neither team'} ({home} vs {away})")
    home_goals, away_goals = int(score.group(1)), int(score.group(2))
    ours, theirs = (home_goals, away_goals) if at_home else (away_goals, home_goals)
    return Match(
        club,
        away if at_home else home,
        at_home,
        ours,
        theirs,
        score.group(3),
        when,
        row.get("competition", "").strip(),
        row.get("season", "").strip(),
    )


def match_questions(row: dict, club: str, templates: tuple[str, ...]) -> list[tuple[str, str, str, list[dict]]]:
    """(template, question, answer, facts the answer states) for one results row. Raises
    ValueError with the reason to skip it."""
    m = parse_match(row, club)
    where = "em casa" if m.at_home else "fora"
    when_text = date_pt(m.when)
    context = ", ".join(x for x in (m.competition, f"época {m.season}" if m.season else "") if x)
    context_text = f" ({context})" if context else ""
    note_text = f" {m.note}" if m.note else ""
    if m.outcome == "win":
        outcome = f"O {club} venceu o {m.opponent} por {m.score}{note_text}, {where}"
    elif m.outcome == "loss":
        outcome = f"O {club} perdeu com o {m.opponent} por {m.score}{note_text}, {where}"
    else:
        outcome = f"O {club} empatou {m.score}{note_text} com o {m.opponent}, {where}"
    out = []
    if "result" in templates:
        out.append(
            (
                "result",
                f"Qual foi o resultado do {club} contra o {m.opponent} em {when_text}?",
                f"{outcome}, a {when_text}{context_text}.",
                m.facts("outcome", "score", "venue", "date", "competition"),
            )
        )
    if "venue" in templates:
        venue = (
            f"Em casa: o {club} recebeu o {m.opponent}"
            if m.at_home
            else f"Fora: o {club} jogou no terreno do {m.opponent}"
        )
        out.append(
            (
                "venue",
                f"O jogo do {club} com o {m.opponent} em {when_text} foi em casa ou fora?",
                f"{venue}, e o resultado foi {m.score} do lado do {club}.",
                m.facts("venue", "score"),
            )
        )
    if "ending" in templates:  # the result asked and answered in other words than "result"
        verdict = {"win": f"Com vitória do {club}", "loss": f"Com derrota do {club}", "draw": "Com um empate"}[
            m.outcome
        ]
        out.append(
            (
                "ending",
                f"Como acabou o encontro entre o {club} e o {m.opponent} de {when_text}?",
                f"{verdict}, {m.score}{note_text}, {where}{f', num jogo da {m.competition}' if m.competition else ''}.",
                m.facts("outcome", "score", "venue", "competition"),
            )
        )
    if "competition" in templates and m.competition:
        out.append(
            (
                "competition",
                f"Em que competição jogou o {club} contra o {m.opponent} em {when_text}?",
                f"Na {m.competition}{f', época {m.season}' if m.season else ''}.",
                m.facts("competition", "season"),
            )
        )
    return out


def match_statements(row: dict, club: str, wordings: int) -> list[str]:
    """The first `wordings` prose renderings of a results row: the same facts as the questions,
    in other sentences."""
    m = parse_match(row, club)
    when_text = date_pt(m.when)
    note = f" {m.note}" if m.note else ""
    competition = m.competition or "um jogo"
    season = f" (época {m.season})" if m.season else ""
    teams = f"{club} e {m.opponent}" if m.at_home else f"{m.opponent} e {club}"
    verdict = {
        "win": f"o {club} ganhou por {m.score}{note}",
        "loss": f"o {club} foi derrotado por {m.score}{note}",
        "draw": f"as duas equipas empataram {m.score}{note}",
    }[m.outcome]
    ending = {
        "win": f"vitória do {club} por {m.score}{note}",
        "loss": f"derrota do {club} por {m.score}{note}",
        "draw": f"um empate a {m.score}{note}",
    }[m.outcome]
    side = "jogando em casa" if m.at_home else "jogando fora"
    # The first sentence names the match (teams, date); the rest states the result, the venue and
    # the competition: what a continuation exercise teaches, since the first sentence is given.
    where = "em casa" if m.at_home else "fora"
    texts = [
        f"Ficha do encontro entre {teams}, a {when_text}. Jogo da {competition}{season}: {side}, {verdict}.",
        f"A {when_text} o {club} defrontou o {m.opponent}. {where.capitalize()}, numa partida da {competition}{season}, "
        f"o encontro terminou com {ending}.",
        f"Na época {m.season or m.when.year} o {club} defrontou o {m.opponent} a {when_text}. "
        f"Resultado do lado do {club}: {m.score}{note}, {where}, na {competition}.",
    ]
    return texts[:wordings]


# ---------------------------------------------------------------- the stage


def _record(
    doc: dict,
    kind: str,
    origin: str,
    group_key: str,
    text: str,
    question: str = "",
    answer: str = "",
    fact_key: str = "",
    probe: bool = False,
    facts: dict | None = None,
) -> dict:
    digest = hashlib.sha256("\x1f".join((kind, origin, text)).encode("utf-8")).hexdigest()[:16]
    return {
        "record_id": f"{kind}-{digest}",
        "doc_id": doc["doc_id"],
        "source_path": doc["source_path"],
        "origin": origin,
        "kind": kind,
        "group_key": group_key,
        "question": question,
        "answer": answer,
        "text": text,
        "question_key": fold(question) if question else "",
        "conflict": False,
        "fact_key": fact_key,
        "probe": probe,
        "facts": factlib.dumps(facts) if facts else "",
    }


def records_for_document(doc: dict, options: RecordOptions, report: RecordReport) -> list[dict]:
    kind, path = doc["kind"], doc["source_path"]
    out = []
    if kind == "prose" and options.include_chunks:
        for i, chunk in enumerate(chunk_document(doc["text"], options.chunk_size_chars, options.chunk_overlap_chars)):
            if len(chunk) >= options.min_chunk_chars:
                out.append(_record(doc, "chunk", f"{path}#chunk{i}", f"doc:{doc['doc_id']}", chunk))
    elif kind == "qa" and options.include_curated_qa:
        for pair in json.loads(doc["payload"]):
            q, a = pair["question"], pair["answer"]
            key = f"q:{fold(q)}"
            # A rewording ("reformula") is the fact of the question it names: never the probe, so
            # when that question is held out for the test, its rewordings train.
            rewords = pair.get("rewords")
            out.append(
                _record(
                    doc,
                    "qa_curated",
                    f"{path}#item{pair['item']}",
                    key,
                    f"{q}\n{a}",
                    q,
                    a,
                    fact_key=f"q:{fold(rewords)}" if rewords else key,
                    probe=not rewords,
                    facts=factlib.question_facts(q, a, options.club_name),
                )
            )
    elif kind == "table" and options.include_table_qa:
        for row in json.loads(doc["payload"]):
            try:
                pairs = match_questions(row, options.club_name, options.table_templates)
                statements = match_statements(row, options.club_name, options.table_statements)
            except ValueError as reason:
                report.warnings.warn(path, f"row skipped: {reason}", row.get("line"))
                continue
            # Each question and wording is a group of its own: the split may hold one out for the
            # test while the others train (fact_key ties them to their match).
            match_key = f"match:{fold(row['date'])}:{fold(row['home'])}:{fold(row['away'])}"
            origin = f"{path}:{row['line']}"
            subject = [
                factlib.fact("name", parse_match(row, options.club_name).opponent),
                factlib.fact("date", parse_date(row["date"]).isoformat()),
            ]
            for i, (template, q, a, answer_facts) in enumerate(pairs):
                out.append(
                    _record(
                        doc,
                        "qa_table",
                        origin,
                        f"{match_key}:{template}",
                        f"{q}\n{a}",
                        q,
                        a,
                        fact_key=match_key,
                        probe=i == 0,
                        facts={"answer": answer_facts, "subject": subject},
                    )
                )
            for i, text in enumerate(statements):
                out.append(
                    _record(doc, "table_text", f"{origin}#text{i}", f"{match_key}:text{i}", text, fact_key=match_key)
                )
    return out


def _fact_tokens(answer: str) -> set[str]:
    """Numbers and capitalised words after the first: what a factual answer hinges on."""
    tokens = re.findall(r"\w+", answer)
    # Short capitalised words are mostly sentence starts ("O", "Em", "Foi"), not names.
    return {t for i, t in enumerate(tokens) if t.isdigit() or (i > 0 and t[:1].isupper() and len(t) > 3)}


def answers_agree(a: str, b: str) -> bool:
    """Two answers agree when they name the same numbers and proper nouns and share most words
    ("venceu os dois jogos" vs "venceu as duas mãos"); "fundado em 1910" vs "em 1912" disagree."""
    if fold(a) == fold(b):
        return True
    if _fact_tokens(a) != _fact_tokens(b):
        return False
    words_a, words_b = set(fold(a).split()), set(fold(b).split())
    return len(words_a & words_b) / len(words_a | words_b) >= 0.5


def check_rewordings(records: list[dict], report: RecordReport) -> None:
    """Warn of a rewording whose question no curated file asks: it is then a fact of its own, with
    no probe, and the split treats it as any other question."""
    asked = {r["fact_key"] for r in records if r["kind"] == "qa_curated" and r["probe"]}
    for r in records:
        if r["kind"] == "qa_curated" and not r["probe"] and r["fact_key"] not in asked:
            item = r["origin"].rsplit("#item", 1)[-1]
            report.warnings.warn(
                r["source_path"],
                f"item {item} rewords a question no curated file asks ({r['fact_key'][2:]!r}): kept as a fact of its own",
            )


def mark_conflicts(records: list[dict], report: RecordReport) -> list[dict]:
    """Drop exact repeats of a question/answer pair; flag questions answered in different ways."""
    seen, kept = set(), []
    for record in records:
        if record["question_key"]:
            key = (record["question_key"], fold(record["answer"]))
            if key in seen:
                report.duplicates_dropped += 1
                continue
            seen.add(key)
        kept.append(record)
    answers: dict[str, list[dict]] = {}
    for record in kept:
        if record["question_key"]:
            answers.setdefault(record["question_key"], []).append(record)
    for key, group in answers.items():
        if any(not answers_agree(a["answer"], b["answer"]) for a, b in itertools.combinations(group, 2)):
            for record in group:
                record["conflict"] = True
            report.conflicts.append(
                {
                    "question": group[0]["question"],
                    "question_key": key,
                    "answers": [{"answer": r["answer"], "origin": r["origin"]} for r in group],
                }
            )
    return kept


_BATCH_BYTES = 1_000_000  # per task: worth sending to a worker, small enough to share out evenly
# Dictionary encoding pays for the repetitive columns only: on texts it slows reading and writing.
_DICTIONARY_COLUMNS = ["doc_id", "source_path", "kind", "group_key", "question_key"]


def _document_batches(corpus_path):
    """The corpus's documents in order, as tables of about `_BATCH_BYTES` of text (a larger
    document alone). Arrow tables, not Python objects: they go to the workers as plain buffers."""
    pieces, size = [], 0
    for batch in open_parquet(corpus_path).iter_batches(
        columns=["doc_id", "source_path", "kind", "text", "payload"], batch_size=64
    ):
        start = 0
        for row, length in enumerate(pc.binary_length(batch.column("text")).fill_null(0).to_pylist()):
            size += length
            if size >= _BATCH_BYTES:
                # take() copies the rows: a slice would carry (and pickle) the whole batch's buffers
                pieces.append(batch.take(list(range(start, row + 1))))
                yield pa.Table.from_batches(pieces)
                pieces, size, start = [], 0, row + 1
        if start < batch.num_rows:
            pieces.append(batch.take(list(range(start, batch.num_rows))))
    if pieces:
        yield pa.Table.from_batches(pieces)


def records_for_documents(docs: pa.Table, options: RecordOptions) -> tuple[pa.Table | None, list[dict], list[dict]]:
    """(table of the chunk records, question records, warnings) of a table of documents: the
    part of the stage that runs in the workers."""
    report = RecordReport()
    chunks, questions = [], []
    for doc in docs.to_pylist():
        for record in records_for_document(doc, options, report):
            (questions if record["question_key"] else chunks).append(record)
    return (_table(chunks) if chunks else None), questions, report.warnings


def _table(records: list[dict]) -> pa.Table:
    """Records as a table (from columns: much faster than from a list of dicts)."""
    return pa.Table.from_pydict(
        {name: [record[name] for record in records] for name in RECORD_SCHEMA.names}, schema=RECORD_SCHEMA
    )


def build_records(corpus_path, records_path, stats_path, options: RecordOptions, workers: int = 1) -> RecordReport:
    for name in options.table_templates:
        if name not in TABLE_TEMPLATES:
            raise PipelineError(
                f"records.table_templates: unknown template '{name}' (choose from {', '.join(TABLE_TEMPLATES)})"
            )
    if not 0 <= options.table_statements <= TABLE_WORDINGS:
        raise PipelineError(
            f"records.table_statements: {options.table_statements} is not between 0 and {TABLE_WORDINGS}"
        )
    if options.chunk_overlap_chars >= options.chunk_size_chars:
        raise PipelineError("records.chunk_overlap_chars must be smaller than records.chunk_size_chars")
    report = RecordReport()
    # Chunks stream straight to disk, in document order whatever the number of workers;
    # questions are few and must be seen together for conflicts.
    questions: list[dict] = []
    written = conflicting = 0
    with atomic_path(records_path, ".parquet") as tmp:
        with pq.ParquetWriter(
            tmp, RECORD_SCHEMA, compression=INTERMEDIATE_COMPRESSION, use_dictionary=_DICTIONARY_COLUMNS
        ) as writer:
            build = functools.partial(records_for_documents, options=options)
            workers = workers_for(parquet_column_bytes(corpus_path, "text"), workers)
            for chunks, batch_questions, warnings in ordered_map(build, _document_batches(corpus_path), workers):
                report.warnings += warnings  # logged by the worker that found them
                questions += batch_questions
                if chunks is not None:
                    writer.write_table(chunks)
                    written += chunks.num_rows
                    report.counts["chunk"] = report.counts.get("chunk", 0) + chunks.num_rows
            questions = mark_conflicts(questions, report)
            check_rewordings(questions, report)
            if questions:
                writer.write_table(_table(questions))
            for record in questions:
                report.counts[record["kind"]] = report.counts.get(record["kind"], 0) + 1
                conflicting += record["conflict"]
            written += len(questions)
        if not written:
            raise PipelineError(
                f"no training records could be built from {corpus_path}; check the records.include_* switches"
            )
    write_json_atomic(
        stats_path,
        {
            "records": written,
            "by_kind": report.counts,
            "conflicts": report.conflicts,
            "conflicting_records": conflicting,
            "duplicate_pairs_dropped": report.duplicates_dropped,
            "warnings": report.warnings,
        },
    )
    return report
