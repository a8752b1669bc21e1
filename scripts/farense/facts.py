"""Facts: what a reference answer states, and whether another text states it too.

One way to read facts serves three uses, so that they cannot disagree:
- the evaluation scores an answer by the facts of its reference (`check`): a fluent answer in the
  reference's template with one wrong fact fails, which token F1 cannot tell;
- the split labels a test question `seen_fact` when one training record states all its facts and
  the subject the question asks about (`states`), in any wording;
- the evaluation counts how often a model asserts a specific fact where none could be known
  (`asserts_specific`).

A fact is a small dict {"kind", "value"}:
  outcome      win | draw | loss, from the club's side ("venceu", "empatou", "perdeu", ...)
  venue        home | away ("em casa", "recebeu" / "fora", "no terreno do", ...)
  score        "2-0", the club's goals first as the reference writes them
  date         "2019-08-18" (written "18 de agosto de 2019", "18/08/2019" or "2019-08-18")
  season       "1994/95" ("1994/95", "1994-95", "1994/1995")
  number       "7000" (digits "7 000", "7.000", or words "sete mil"; ordinals "5.º", "quinto lugar")
  name         "Paco Fortes" (a run of capitalised words; the club's own name is not a fact)
  competition  "Segunda Liga" (match questions only: the competition column)

Kinds whose value a statement can only have one of (outcome, venue, score, date) are exclusive in
`check`: an answer that states the right score and another one ("2-0 ... 1-2") does not state it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache

EXCLUSIVE = ("outcome", "venue", "score", "date")
# The months as the corpus writes them (records.py writes dates with them), and in plain() form,
# the form texts are compared in.
MONTH_NAMES = (
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
)

_OUTCOME_WORDS = {
    "win": (
        "venceu",
        "vencer",
        "venceram",
        "vence",
        "vitoria",
        "ganhou",
        "ganhar",
        "ganharam",
        "triunfo",
        "triunfou",
        "bateu",
        "derrotou",
    ),
    "draw": ("empatou", "empate", "empataram", "empatar", "igualdade", "empatado"),
    "loss": ("perdeu", "perder", "perderam", "derrota", "derrotado", "perdido"),
}
_VENUE_PHRASES = {
    "home": ("em casa", "recebeu", "recebendo", "receber", "no seu estadio", "perante o seu publico"),
    "away": ("fora", "no terreno", "visitou", "deslocou", "deslocacao", "visita ao", "visita a"),
}
_ABSTAIN = (
    "nao sei",
    "nao tenho",
    "desconheco",
    "nao ha informacao",
    "nao consigo",
    "nao e possivel",
    "nao existe informacao",
    "sem informacao",
)

_UNITS = {
    "zero": 0,
    "um": 1,
    "uma": 1,
    "dois": 2,
    "duas": 2,
    "tres": 3,
    "quatro": 4,
    "cinco": 5,
    "seis": 6,
    "sete": 7,
    "oito": 8,
    "nove": 9,
    "dez": 10,
    "onze": 11,
    "doze": 12,
    "treze": 13,
    "catorze": 14,
    "quatorze": 14,
    "quinze": 15,
    "dezasseis": 16,
    "dezesseis": 16,
    "dezassete": 17,
    "dezessete": 17,
    "dezoito": 18,
    "dezanove": 19,
    "dezenove": 19,
}
_TENS = {
    "vinte": 20,
    "trinta": 30,
    "quarenta": 40,
    "cinquenta": 50,
    "sessenta": 60,
    "setenta": 70,
    "oitenta": 80,
    "noventa": 90,
}
_HUNDREDS = {
    "cem": 100,
    "cento": 100,
    "duzentos": 200,
    "duzentas": 200,
    "trezentos": 300,
    "trezentas": 300,
    "quatrocentos": 400,
    "quinhentos": 500,
    "seiscentos": 600,
    "setecentos": 700,
    "oitocentos": 800,
    "novecentos": 900,
}
_ORDINALS = {
    "primeiro": 1,
    "primeira": 1,
    "segundo": 2,
    "segunda": 2,
    "terceiro": 3,
    "terceira": 3,
    "quarto": 4,
    "quarta": 4,
    "quinto": 5,
    "quinta": 5,
    "sexto": 6,
    "sexta": 6,
    "setimo": 7,
    "setima": 7,
    "oitavo": 8,
    "oitava": 8,
    "nono": 9,
    "nona": 9,
    "decimo": 10,
    "decima": 10,
}
# An ordinal word is a number only before these ("segundo os relatos" means "according to").
_RANK_NOUNS = ("lugar", "posicao", "classificad", "melhor", "divisao", "escalao")
# Capitalised words that start sentences or name generic things: never a name on their own.
_NOT_NAMES = frozenset(
    "o a os as um uma uns umas em no na nos nas ao aos do da dos das de e é foi era sim nao não ja já depois antes durante "
    "com sem para por pelo pela pelos pelas entre sobre desde ate até quando onde como quem qual quais que porque mas ou se este esta "
    "esse essa isso isto aquele aquela nesse nessa neste nesta nessa naquele naquela ele ela eles elas hoje segundo tambem também "
    "ainda mais muito muitos muitas poucos cerca apenas so só la lá aqui ali ha há tinha teve tem houve fica ficou "
    "quanto quanta quantos quantas".split()
)
# The club's own name is the subject of nearly every answer, not a fact of it ("Faro", its city, is one).
_CLUB_WORDS = frozenset({"sporting", "clube", "club", "sc", "farense", "de"})
_CONNECTORS = frozenset({"de", "da", "do", "dos", "das"})

_ACCENTS = str.maketrans("áàâãäéèêëíìîïóòôõöúùûüçñ", "aaaaaeeeeiiiiooooouuuucn")
MONTHS = tuple(name.translate(_ACCENTS) for name in MONTH_NAMES)
_SCORE = re.compile(r"(?<![\d/.:-])(\d{1,2})\s*(?:-|–|x|:|\ba\b)\s*(\d{1,2})(?!\d|[/.:,-]\d)")
_DATE_WORDS = re.compile(r"\b(\d{1,2})(?:\.?º|\.?o)?\s+de\s+(" + "|".join(MONTHS) + r")\s+(?:de\s+)?(\d{4})\b")
_DATE_DMY = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\b")
_DATE_YMD = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_SEASON = re.compile(r"\b(1[89]\d\d|20\d\d)\s*[/-]\s*(\d{4}|\d{2})\b")
_NUMBER = re.compile(r"(?<![\d,])(\d{1,3}(?:[ .\u00a0\u202f]\d{3})+|\d+)(?:\.?[ºª°])?(?![\d])")
_WORD = re.compile(r"\w+")
_NAME_TOKEN = re.compile(r"[A-ZÀ-ÖØ-Þ][\wÀ-ÿ'’-]*")
# A capitalised word that opens a sentence alone is a verb more often than a name ("Venceu",
# "Foram", "Contando"): these endings keep it out.
_VERB_ENDING = re.compile(r"(?:ou|eu|iu|am|em|ram|ava|avam|ia|iam|ando|endo|indo|ado|ido)$")


def plain(text: str) -> str:
    """Lower case, without accents, one space between words, punctuation kept (scores, dates and
    seasons are read from it): the form facts are compared in. (records.fold also drops punctuation.)"""
    text = unicodedata.normalize("NFC", text).casefold().replace("º", "o").replace("ª", "a")
    return " ".join(text.translate(_ACCENTS).split())


def plain_words(text: str) -> set[str]:
    """The distinct words of a text in plain() form, for an index of words: the accents go by
    decomposition and an ASCII encoding, in C (str.translate over every character took two
    thirds of the labelling time of a 20 MB corpus)."""
    ascii_text = unicodedata.normalize("NFKD", text.casefold()).encode("ascii", "ignore").decode("ascii")
    return set(_WORD.findall(ascii_text))


def fact(kind: str, value) -> dict:
    return {"kind": kind, "value": str(value)}


def dumps(facts: dict) -> str:
    return json.dumps(facts, ensure_ascii=False, sort_keys=True)


# ---------------------------------------------------------------- reading a text


def _number_words(words: list[str]) -> list[int]:
    """Numbers written in Portuguese words ("vinte e um", "sete mil", "quinto lugar")."""
    found, value, current, started = [], 0, 0, False
    for i, word in enumerate(words + [""]):
        if word in _UNITS and not (word in ("um", "uma") and not started):
            current += _UNITS[word]
            started = True
        elif word in _TENS or word in _HUNDREDS:
            current += _TENS.get(word) or _HUNDREDS[word]
            started = True
        elif word == "mil":
            value += (current or 1) * 1000
            current, started = 0, True
        elif word == "e" and started:
            continue
        else:
            if started:
                found.append(value + current)
            value, current, started = 0, 0, False
            if word in _ORDINALS and any(w.startswith(_RANK_NOUNS) for w in words[i + 1 : i + 3]):
                found.append(_ORDINALS[word])
    return found


@lru_cache(maxsize=4096)
def read(text: str) -> dict:
    """Every fact-like value a text states, by kind (sets), plus its folded form."""
    folded = plain(text)
    values: dict[str, set] = {kind: set() for kind in ("outcome", "venue", "score", "date", "season", "number")}
    spans = []  # character spans of dates and seasons: their digits are not scores or numbers
    for m in _DATE_WORDS.finditer(folded):
        values["date"].add(_iso(int(m.group(3)), MONTHS.index(m.group(2)) + 1, int(m.group(1))))
        spans.append(m.span())
    for pattern, order in ((_DATE_DMY, "dmy"), (_DATE_YMD, "ymd")):
        for m in pattern.finditer(folded):
            a, b, c = (int(g) for g in m.groups())
            values["date"].add(_iso(c, b, a) if order == "dmy" else _iso(a, b, c))
            spans.append(m.span())
    for m in _SEASON.finditer(folded):
        if not _inside(m.span(), spans):
            start, end = int(m.group(1)), m.group(2)
            end = int(end) % 100 if len(end) == 4 else int(end)
            if end == (start + 1) % 100:
                values["season"].add(f"{start}/{end:02d}")
                spans.append(m.span())
    for m in _SCORE.finditer(folded):
        if not _inside(m.span(), spans):
            values["score"].add(f"{int(m.group(1))}-{int(m.group(2))}")
            spans.append(m.span())
    for m in _NUMBER.finditer(folded):
        if not _inside(m.span(), spans):
            values["number"].add(str(int(re.sub(r"\D", "", m.group(1)))))
    words = _WORD.findall(folded)
    values["number"].update(str(n) for n in _number_words(words))
    padded = f" {' '.join(words)} "
    for outcome, keys in _OUTCOME_WORDS.items():
        if any(f" {k} " in padded for k in keys):
            values["outcome"].add(outcome)
    for venue, keys in _VENUE_PHRASES.items():
        if any(f" {k} " in padded for k in keys):
            values["venue"].add(venue)
    return {"folded": padded, "values": values}


def _iso(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _inside(span, spans) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in spans)


def names(text: str, club: str = "Farense") -> list[str]:
    """Runs of capitalised words ("Paco Fortes", "Estádio de São Luís", "Taça UEFA"), without
    sentence-initial function words and without the club's own name."""
    club_words = _CLUB_WORDS | set(plain(club).split())
    out, run, run_at_start = [], [], False
    tokens = re.findall(r"[\wÀ-ÿ'’-]+|[^\w\s]", text)

    def close():
        while run and plain(run[-1]) in _CONNECTORS:
            run.pop()
        words = [plain(w) for w in run]
        if (
            run
            and not all(w in club_words or w in _CONNECTORS for w in words)
            and not (len(run) == 1 and run[0].isdigit())
        ):
            out.append(" ".join(run))
        run.clear()

    sentence_start = True
    for token in tokens:
        if _NAME_TOKEN.fullmatch(token):
            if not run and plain(token) in _NOT_NAMES:
                sentence_start = False
                continue
            run.append(token)
        elif run and plain(token) in _CONNECTORS:
            run.append(token)
        else:
            if len(run) == 1 and run_at_start and _VERB_ENDING.search(plain(run[0])):
                run.clear()
            close()
        if len(run) == 1 and token is run[0]:
            run_at_start = sentence_start
        sentence_start = token in (".", "!", "?", ":", ";")
    if len(run) == 1 and run_at_start and _VERB_ENDING.search(plain(run[0])):
        run.clear()
    close()
    seen, unique = set(), []
    for name in out:
        if plain(name) not in seen:
            seen.add(plain(name))
            unique.append(name)
    return unique


def text_facts(text: str, club: str = "Farense") -> list[dict]:
    """The facts a free text states: dates, seasons, scores, numbers, names (what a curated
    answer hinges on), in a stable order."""
    values = read(text)["values"]
    years = {d[:4] for d in values["date"]} | {s[:4] for s in values["season"]}
    out = [fact("date", d) for d in sorted(values["date"])] + [fact("season", s) for s in sorted(values["season"])]
    out += [fact("score", s) for s in sorted(values["score"])]
    out += [fact("number", n) for n in sorted(values["number"], key=int) if n not in years]
    out += [fact("name", n) for n in names(text, club)]
    return out


def question_facts(question: str, answer: str, club: str = "Farense") -> dict:
    """{"answer": what the answer states beyond the question, "subject": what the question names}."""
    subject = text_facts(question, club)
    asked = {(f["kind"], plain(f["value"])) for f in subject}
    answer_facts = [f for f in text_facts(answer, club) if (f["kind"], plain(f["value"])) not in asked]
    return {"answer": answer_facts, "subject": subject}


# ---------------------------------------------------------------- checking a text


def states(f: dict, text: str) -> bool:
    """Whether `text` states fact `f` (presence: other values of the same kind may be there too)."""
    kind, value = f["kind"], f["value"]
    seen = read(text)
    if kind in ("name", "competition"):
        target = " ".join(_WORD.findall(plain(value)))  # as the text's words are kept: "Jean-Luc" is "jean luc"
        if f" {target} " in seen["folded"]:
            return True
        words = [w for w in target.split() if w not in _CONNECTORS]
        return len(words) > 1 and all(f" {w} " in seen["folded"] for w in words)
    if kind == "number":  # a year is stated by a date or a season that holds it too
        years = {d[:4] for d in seen["values"]["date"]} | {s[:4] for s in seen["values"]["season"]}
        years |= {str(int(s[:4]) + 1) for s in seen["values"]["season"]}
        return value in seen["values"]["number"] or value in years
    return value in seen["values"][kind]


def check(facts: list[dict], answer: str) -> list[dict]:
    """Each reference fact with `stated`: the answer states it and, for an exclusive kind, no
    other value of that kind than the reference's ones."""
    seen = read(answer)["values"]
    expected: dict[str, set] = {}
    for f in facts:
        expected.setdefault(f["kind"], set()).add(f["value"])
    out = []
    for f in facts:
        ok = states(f, answer)
        if ok and f["kind"] in EXCLUSIVE:
            ok = seen[f["kind"]] <= expected[f["kind"]]
        out.append({**f, "stated": bool(ok)})
    return out


def asserts_specific(answer: str, question: str, club: str = "Farense") -> bool:
    """Whether an answer asserts a specific fact the question does not already hold (a date, a
    season, a score, a number, a name, a result or a venue), rather than declining to answer."""
    folded = plain(answer)
    if any(phrase in folded for phrase in _ABSTAIN):
        return False
    asked = {(f["kind"], plain(f["value"])) for f in text_facts(question, club)}
    claimed = {(f["kind"], plain(f["value"])) for f in text_facts(answer, club)} - asked
    values = read(answer)["values"]
    return bool(claimed or values["outcome"] or values["venue"])
