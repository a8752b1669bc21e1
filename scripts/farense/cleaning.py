"""Text cleaning steps. Each step takes text and returns (text, count of what it changed).

`clean_prose` chains them for one document. The output is NFC text with Unix newlines,
one paragraph per line and a blank line between paragraphs; feeding it back through
`clean_prose` returns it unchanged (the tests hold us to that).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .markup import html_to_text, markdown_to_text
from .options import from_config
from .mojibake import fix_mojibake

# Every count a document can carry, in the order the steps run. The names are the
# columns of corpus.parquet (prefixed "n_") and the keys of stats.json.
STEPS = (
    "line_endings",
    "mojibake",
    "html",
    "markdown",
    "soft_hyphens",
    "control_chars",
    "page_numbers",
    "running_headers",
    "stray_bullets",
    "hyphenation",
    "wrapped_lines",
    "emoji",
    "whitespace",
    "unicode_nfc",
)
# What each step's count counts, for stats.json and the report.
STEP_UNITS = {
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
}


@dataclass(frozen=True)
class CleaningOptions:
    fix_mojibake: bool = True
    strip_html: bool = True
    markdown_to_text: bool = True
    join_hyphenation: bool = True
    join_wrapped_lines: bool = True
    remove_page_furniture: bool = True
    running_header_min_repeats: int = 3
    remove_emoji: bool = True

    from_config = classmethod(from_config)


# Marks, on a line of its own, where a page ended (a form feed, a removed page number or
# running header), so that a sentence cut by a page break can be rejoined. Only that: blank
# lines alone never join paragraphs, which keeps cleaning idempotent. Removed before output.
PAGE_BREAK = "\ue000"


def normalize_line_endings(text: str, page_marks: bool = False) -> tuple[str, int]:
    count = text.count("\r\n") + text.count("\r") - text.count("\r\n") + text.count("\f")
    page = f"\n{PAGE_BREAK}\n" if page_marks else "\n"
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", page), count


_SOFT_HYPHEN_BREAK = re.compile("\u00ad[ \t]*\n[ \t]*")


def remove_soft_hyphens(text: str) -> tuple[str, int]:
    # A soft hyphen before a line break marks a word split by the typesetter: join it.
    count = text.count("\u00ad")
    text = _SOFT_HYPHEN_BREAK.sub("", text)
    return text.replace("\u00ad", ""), count


_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _ZERO_WIDTH + "]")


def remove_control_chars(text: str) -> tuple[str, int]:
    """Drop C0/C1 control characters (keeping tab and newline) and zero-width characters."""
    return _CONTROL.subn("", text)


# "12", "- 13 -", "— 14 —", "Pág. 14", "Página 15", "p. 16", "[17]": a page number on its own line.
# Four-digit numbers are left alone: a year on its own line is more likely than page 1910.
_PAGE_NUMBER = re.compile(
    r"^[ \t]*(?:[-–—][ \t]*)?(?:(?:p[áa]g(?:ina)?|p)\.?[ \t]*)?\[?\d{1,3}\]?(?:[ \t]*[-–—])?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def remove_page_numbers(text: str) -> tuple[str, int]:
    return _PAGE_NUMBER.subn(PAGE_BREAK, text)


def remove_running_headers(text: str, min_repeats: int = 3) -> tuple[str, int]:
    """Drop short lines that repeat on many pages (running headers and footers).

    A line counts when it has at most 80 characters, does not end a sentence and occurs
    at least `min_repeats` times in the document.
    """
    lines = text.split("\n")
    counts: dict[str, int] = {}
    for line in lines:
        key = line.strip()
        if key and key != PAGE_BREAK and len(key) <= 80 and not key.endswith((".", "!", "?")):
            counts[key] = counts.get(key, 0) + 1
    furniture = {key for key, n in counts.items() if n >= min_repeats}
    if not furniture:
        return text, 0
    kept = [PAGE_BREAK if line.strip() in furniture else line for line in lines]
    return "\n".join(kept), sum(1 for line in lines if line.strip() in furniture)


_BULLETS = "•▪▫◦·●○■□➢►‣⁃∙"
_BULLET_LINE = re.compile(rf"^[ \t]*[{_BULLETS}](?:[ \t]*[{_BULLETS}])*[ \t]*$", re.MULTILINE)
_BULLET_START = re.compile(rf"^[ \t]*[{_BULLETS}][ \t]+", re.MULTILINE)


def remove_stray_bullets(text: str) -> tuple[str, int]:
    text, alone = _BULLET_LINE.subn("", text)
    text, leading = _BULLET_START.subn("", text)
    return text, alone + leading


# Starts with the literal hyphen so that the regex engine can skip ahead quickly; the word
# before it is read separately.
_LINE_BREAK_HYPHEN = re.compile(rf"-[ \t]*\n(?:[ \t{PAGE_BREAK}]*\n)*[ \t]*(-?)([a-zà-ÿ]\w*)([ \t]+)?")
_WORD_BEFORE = re.compile(r"\w+$")
# Scanned books: the hyphen of a word split at a line break read as a bullet, "associa•\ntiva",
# or "associa• tiva" once the break became a space. A bullet right after a letter and before a
# lowercase letter, with nothing or one break between, is that hyphen; a bullet between spaces
# ("sede • estádio") is not touched.
_BULLET_HYPHEN = re.compile(r"(?<=[^\W\d_])•(?:[ \t]*\n[ \t]*|[ \t])(?=[a-zà-ÿ])")


def join_hyphenation(text: str) -> tuple[str, int]:
    """Join words split across a line break: "associa-\\ntiva" -> "associativa".

    The hyphen stays when the document elsewhere writes the same compound with it
    ("guarda-\\nredes" -> "guarda-redes"), since Portuguese has many such compounds, and
    when the next line repeats it ("pré-\\n-época" -> "pré-época"). A bullet read for that
    hyphen ("associa• tiva", _BULLET_HYPHEN) is taken for one.
    """
    text = _BULLET_HYPHEN.sub("-\n", text)
    if "-" not in text:
        return text, 0
    lower = None
    out, last, count = [], 0, 0
    for match in _LINE_BREAK_HYPHEN.finditer(text):
        left_match = _WORD_BEFORE.search(text, max(last, match.start() - 60), match.start())
        if left_match is None:
            continue
        repeated, right, space = match.groups()
        left = left_match.group()
        compound = f"{left}-{right}"
        if not repeated:
            lower = text.lower() if lower is None else lower
            repeated = compound.lower() in lower
        # The space after the rejoined word becomes a line break, so that line lengths still
        # show the wrapping to join_wrapped_lines.
        out.append(text[last : left_match.start()])
        out.append((compound if repeated else left + right) + ("\n" if space else ""))
        last = match.end()
        count += 1
    if not count:
        return text, 0
    out.append(text[last:])
    return "".join(out), count


_SENTENCE_END = (".", "!", "?", ":", "…", "»", '"', "”", ";")


def _is_hard_wrapped(lines: list[str]) -> bool:
    """Lines of similar length under 100 characters: a block wrapped at a fixed width."""
    if len(lines) < 2:
        return False
    width = max(len(line) for line in lines)
    if width > 100:
        return False
    full = sum(1 for line in lines[:-1] if len(line) >= 0.6 * width)
    return full >= 0.6 * (len(lines) - 1)


def _split_block(lines: list[str]) -> list[str]:
    """Turn one block of lines (no blank lines inside) into paragraphs."""
    if _is_hard_wrapped(lines):
        width = max(len(line) for line in lines)
        paragraphs, current = [], []
        for line in lines:
            current.append(line)
            if line.endswith(_SENTENCE_END) and len(line) < 0.85 * width:
                paragraphs.append(" ".join(current))
                current = []
        if current:
            paragraphs.append(" ".join(current))
        return paragraphs
    # Long lines: each is a paragraph, unless a line was visibly cut mid-sentence.
    paragraphs = []
    for line in lines:
        if paragraphs and not paragraphs[-1].endswith(_SENTENCE_END) and line[:1].islower():
            paragraphs[-1] += " " + line
        else:
            paragraphs.append(line)
    return paragraphs


def _continues(previous: str, paragraph: str) -> bool:
    """A page break cut a sentence: the previous paragraph stops without punctuation, and the
    next starts in lower case, or the previous one is too long to be a heading."""
    if previous.endswith(_SENTENCE_END):
        return False
    return paragraph[:1].islower() or len(previous) >= 80


def join_wrapped_lines(text: str, across_pages: bool = False) -> tuple[str, int]:
    """Rebuild paragraphs: one line each, separated by a blank line.

    Hard-wrapped blocks are joined. With `across_pages`, a paragraph that a page break
    (a PAGE_BREAK line) cut mid-sentence is joined to its continuation on the next page.
    """
    blocks: list[tuple[list[str], bool]] = []  # (lines, follows a page break)
    current: list[str] = []
    page_break = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and stripped != PAGE_BREAK:
            current.append(stripped)
            continue
        if current:
            blocks.append((current, page_break))
            current, page_break = [], False
        page_break = page_break or stripped == PAGE_BREAK
    if current:
        blocks.append((current, page_break))
    paragraphs: list[str] = []
    for lines, after_page_break in blocks:
        for i, paragraph in enumerate(_split_block(lines)):
            if across_pages and after_page_break and i == 0 and paragraphs and _continues(paragraphs[-1], paragraph):
                paragraphs[-1] += " " + paragraph
            else:
                paragraphs.append(paragraph)
    before = sum(len(lines) for lines, _ in blocks)
    return "\n\n".join(paragraphs), before - len(paragraphs)


# Coarse blocks where pictographs live; each candidate is then checked for category So
# (symbols), so arrows, maths and letters in these blocks stay. Joiners, variation
# selectors and skin tones are the glue of emoji sequences.
_EMOJI_CANDIDATE = re.compile("[\u2190-\u2bff\U0001f000-\U0001faff\u200d\u20e3\ufe0e\ufe0f]")
_EMOJI_GLUE = {"\u200d", "\u20e3", "\ufe0e", "\ufe0f"}


def _is_emoji(char: str) -> bool:
    return char in _EMOJI_GLUE or 0x1F3FB <= ord(char) <= 0x1F3FF or unicodedata.category(char) == "So"


def remove_emoji(text: str) -> tuple[str, int]:
    count = 0

    def drop(match: re.Match) -> str:
        nonlocal count
        if _is_emoji(match.group()):
            count += 1
            return ""
        return match.group()

    return _EMOJI_CANDIDATE.sub(drop, text), count


# Every whitespace character but the newline, spelled out: a negated class (\S) is slow.
_SPACE_CHARS = "\t\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACES = re.compile(f"[ {_SPACE_CHARS}]{{2,}}|[{_SPACE_CHARS}]")  # runs of 2+, or one tab/NBSP/other space
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?»)])")
_LINE_EDGES = re.compile(r" +\n *|\n +")
_BLANK_RUNS = re.compile(r"\n{3,}")


_ODD_SPACE = re.compile(f"[{_SPACE_CHARS}]")
# Spelled with a literal prefix, which the regex engine finds by a fast search: " {2,}" and
# checking " ," " ." ... one by one were 4 times slower.
_DOUBLE_SPACES = re.compile("  +")
_ANY_SPACE_BEFORE_PUNCT = re.compile(" [,.;:!?»)]")


def normalize_whitespace(text: str) -> tuple[str, int]:
    """Unicode spaces and tabs become one space; lines are stripped; at most one blank line.
    Counts the spacing fixes made.

    Each pattern runs only when a substring search (much faster than the regex scan) shows
    it can match: most text needs none of them."""
    a = b = c = d = 0
    if _ODD_SPACE.search(text):
        text, a = _SPACES.subn(" ", text)
    elif "  " in text:  # plain spaces only: the same matches, found by a fast literal search
        text, a = _DOUBLE_SPACES.subn(" ", text)
    if _ANY_SPACE_BEFORE_PUNCT.search(text):
        text, b = _SPACE_BEFORE_PUNCT.subn(r"\1", text)
    if " \n" in text or "\n " in text:
        text, c = _LINE_EDGES.subn("\n", text)
    if "\n\n\n" in text:
        text, d = _BLANK_RUNS.subn("\n\n", text)
    stripped = text.strip(" \n")
    return stripped, a + b + c + d + (stripped != text)


def to_nfc(text: str) -> tuple[str, int]:
    new = unicodedata.normalize("NFC", text)
    # Count the combining marks absorbed into precomposed letters.
    return new, 0 if new == text else max(1, len(text) - len(new))


def clean_inline(text: str, options: CleaningOptions, counts: dict[str, int]) -> str:
    """The steps that apply to a short field (a table cell, a question): no layout work."""

    def run(step: str, fn, *args):
        nonlocal text
        text, n = fn(text, *args)
        counts[step] = counts.get(step, 0) + n

    run("line_endings", normalize_line_endings)
    if options.fix_mojibake:
        run("mojibake", fix_mojibake)
    run("soft_hyphens", remove_soft_hyphens)
    run("control_chars", remove_control_chars)
    if options.remove_emoji:
        run("emoji", remove_emoji)
    text = text.replace("\n", " ")
    run("whitespace", normalize_whitespace)
    run("unicode_nfc", to_nfc)
    return text


def clean_prose(text: str, fmt: str, options: CleaningOptions, counts: dict[str, int] | None = None) -> str:
    """Clean one document's prose. `fmt` is txt, md or html; counts are added into `counts`."""
    counts = {} if counts is None else counts

    def run(step: str, fn, *args):
        nonlocal text
        text, n = fn(text, *args)
        counts[step] = counts.get(step, 0) + n

    run("line_endings", normalize_line_endings, fmt == "txt")
    if options.fix_mojibake:
        run("mojibake", fix_mojibake)
    if fmt == "html" and options.strip_html:
        run("html", html_to_text)
    if fmt == "md" and options.markdown_to_text:
        run("markdown", markdown_to_text)
    run("soft_hyphens", remove_soft_hyphens)
    run("control_chars", remove_control_chars)
    # Page furniture only exists in paginated text (scans, exports): plain text files.
    if fmt == "txt" and options.remove_page_furniture:
        run("page_numbers", remove_page_numbers)
        run("running_headers", remove_running_headers, options.running_header_min_repeats)
        run("stray_bullets", remove_stray_bullets)
    if options.join_hyphenation:
        run("hyphenation", join_hyphenation)
    if options.remove_emoji:
        run("emoji", remove_emoji)
    if options.join_wrapped_lines:
        run("wrapped_lines", join_wrapped_lines, fmt == "txt")
    text = text.replace(PAGE_BREAK, "")  # left when line joining is switched off
    run("whitespace", normalize_whitespace)
    run("unicode_nfc", to_nfc)
    return text
