"""HTML and Markdown to plain prose. Blocks become paragraphs; table rows become readable rows."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Content of these elements is boilerplate or code, never prose.
_SKIP_TAGS = {
    "head",
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "button",
    "select",
    "iframe",
    "object",
    "canvas",
}
# class/id words that mark navigation and banners in the wild.
_SKIP_MARKERS = re.compile(
    r"cookie|(?<![a-z])nav|menu|breadcrumb|footer|sidebar|banner|share|social|advert|newsletter", re.I
)
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "ul",
    "ol",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "dl",
    "figcaption",
    "figure",
    "table",
    "caption",
    "hr",
    "body",
}


def table_row_text(headers: list[str], cells: list[str]) -> str:
    """'Época: 1994/95; Posição: 5.º.' when headers are known, else cells joined by ' | '."""
    cells = [c.strip() for c in cells]
    if headers and len(headers) == len(cells):
        parts = [f"{h}: {c}" for h, c in zip(headers, cells) if c]
        text = "; ".join(parts)
    else:
        text = " | ".join(c for c in cells if c)
    if text and not text.endswith((".", "!", "?")):
        text += "."
    return text


_TABLE_ROW = re.compile(r"^[^:;]{1,60}: [^;]*(?:; [^:;]{1,60}: [^;]*)+\.$")


def is_table_row(paragraph: str) -> bool:
    """A paragraph made by table_row_text with headers: rows of one table look alike by
    design, so they are facts to keep, not near duplicates to drop."""
    return bool(_TABLE_ROW.match(paragraph))


class _ProseExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.current: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, skipping) for open elements
        self.skip_depth = 0
        self.tags_removed = 0
        self.table: list[list[str]] | None = None
        self.header_row: list[str] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def _flush(self):
        text = " ".join("".join(self.current).split())
        if text:
            self.paragraphs.append(text)
        self.current = []

    def handle_starttag(self, tag, attrs):
        self.tags_removed += 1
        attributes = dict(attrs)
        marker = " ".join(filter(None, (attributes.get("class"), attributes.get("id"), attributes.get("role"))))
        skipping = tag in _SKIP_TAGS or bool(marker and _SKIP_MARKERS.search(marker))
        if tag not in _VOID_TAGS:
            self.stack.append((tag, skipping))
            if skipping:
                self.skip_depth += 1
        if self.skip_depth:
            return
        if tag == "br":
            self.current.append("\n" if self.cell is None else " ")
        elif tag == "table":
            self._flush()
            self.table, self.header_row = [], []
        elif tag == "tr" and self.table is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag in _BLOCK_TAGS and self.cell is None:
            self._flush()

    def handle_endtag(self, tag):
        # Pop to the matching open element; stray end tags are ignored (lenient HTML).
        if not any(open_tag == tag for open_tag, _ in self.stack):
            return
        while self.stack:
            open_tag, skipping = self.stack.pop()
            if skipping:
                self.skip_depth -= 1
            if open_tag == tag:
                break
        if self.skip_depth:
            return
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None and self.table is not None:
            if self.row:
                self.table.append(self.row)
            self.row = None
        elif tag == "table" and self.table is not None:
            self._emit_table()
        elif tag in _BLOCK_TAGS and self.cell is None:
            self._flush()

    def _emit_table(self):
        rows, self.table = self.table, None
        if not rows:
            return
        headers, body = (rows[0], rows[1:]) if len(rows) > 1 else ([], rows)
        for cells in body:
            text = table_row_text(headers, cells)
            if text:
                self.paragraphs.append(text)

    def handle_data(self, data):
        if self.skip_depth:
            return
        (self.cell if self.cell is not None else self.current).append(data)

    def close(self):
        super().close()
        if self.table is not None:
            self._emit_table()
        self._flush()


def html_to_text(html: str) -> tuple[str, int]:
    """Return (prose, number of tags removed). Script, style, navigation and banners are dropped."""
    parser = _ProseExtractor()
    parser.feed(html)
    parser.close()
    # A <br> inside a paragraph leaves a line break: keep it as one, for the line joiner.
    paragraphs = [re.sub(r" *\n *", "\n", p) for p in parser.paragraphs]
    return "\n\n".join(paragraphs), parser.tags_removed


_MD_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$")
_MD_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_RULE = re.compile(r"^ {0,3}([-*_])([ \t]*\1){2,}[ \t]*$")
_MD_LIST = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+")
_MD_QUOTE = re.compile(r"^[ \t]*>[ \t]?")
_MD_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_MD_FENCE = re.compile(r"^[ \t]*(```|~~~)")

# (substrings one of which every match contains, pattern, replacement): a pattern runs only on lines that
# hold its substring, since most lines carry no markup and a substring test is far cheaper.
_MD_INLINE = (
    (("![",), re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (("](",), re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links keep their text
    (("<",), re.compile(r"<(?:https?|mailto):[^>]+>"), ""),  # autolinks
    (("<",), re.compile(r"<br\s*/?>", re.I), " "),
    (("<",), re.compile(r"</?[a-zA-Z][^>]*>"), ""),  # inline HTML tags
    (("`",), re.compile(r"`([^`]+)`"), r"\1"),
    (("**", "__"), re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (("*",), re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (("_",), re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (("~~",), re.compile(r"~~(.+?)~~"), r"\1"),
    (("\\",), re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>])"), r"\1"),  # backslash escapes
)


def _md_inline(text: str) -> tuple[str, int]:
    count = 0
    for triggers, pattern, replacement in _MD_INLINE:
        if not any(t in text for t in triggers):
            continue
        text, n = pattern.subn(replacement, text)
        count += n
    return text, count


def _split_table_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [cell.strip() for cell in line.split("|")]


def markdown_to_text(md: str) -> tuple[str, int]:
    """Return (prose, number of markdown constructs removed).

    Headings, list items and table rows become paragraphs of their own; inline markup
    keeps its text. Fenced code keeps its content.
    """
    lines = md.split("\n")
    out: list[str] = []
    count = 0
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if _MD_FENCE.match(line):
            in_fence = not in_fence
            count += 1
            i += 1
            continue
        if in_fence:
            out.append(line)
            i += 1
            continue
        # A table: a row line followed by a separator line.
        if "|" in line and i + 1 < len(lines) and _MD_TABLE_SEP.match(lines[i + 1]):
            headers = [_md_inline(c)[0] for c in _split_table_row(line)]
            i += 2
            count += 2
            out.append("")
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                cells = [_md_inline(c)[0] for c in _split_table_row(lines[i])]
                out.extend([table_row_text(headers, cells), ""])
                count += 1
                i += 1
            continue
        if _MD_RULE.match(line):
            out.append("")
            count += 1
        elif (m := _MD_HEADING.match(line)) is not None:
            out.extend(["", m.group(1), ""])
            count += 1
        elif _MD_SETEXT.match(line) and out and out[-1].strip():
            out.append("")  # the line above was a heading: end its paragraph
            count += 1
        else:
            if (m := _MD_QUOTE.match(line)) is not None:
                line = line[m.end() :]
                count += 1
            if (m := _MD_LIST.match(line)) is not None:
                out.append("")
                line = line[m.end() :]
                count += 1
            text, n = _md_inline(line)
            count += n
            out.append(text)
        i += 1
    return "\n".join(out), count
