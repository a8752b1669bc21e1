"""Repair of mojibake: UTF-8 text that was once decoded with the wrong 8-bit code page.

ftfy repairs whole lines well, but leaves a mis-decoded word alone when the same line also
holds correct accents, and it leaves mac_roman damage ("√°" for "á") in such lines too.
Copy-pasted text mixes both, so after ftfy a local pass repairs each damaged sequence on its
own, for cp1252 and mac_roman. It only accepts repairs that yield Latin-1 letters and signs or
typographic punctuation, so legitimate text ("«É", "Ãgua"-free Portuguese) is never touched.
"""

from __future__ import annotations

import re

import ftfy

# ftfy limited to encoding repairs; the other cleaning steps count their own changes.
_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


def _decoded(encoding: str, byte_values) -> str:
    chars = []
    for value in byte_values:
        try:
            chars.append(bytes([value]).decode(encoding))
        except UnicodeDecodeError:
            pass
    return "".join(chars)


def _sequence_pattern(encoding: str) -> re.Pattern:
    # Two-byte UTF-8 for U+0080-U+00FF starts with 0xC2/0xC3; curly quotes and dashes
    # are 0xE2 0x80 xx. Only these leads are accepted: they cover Portuguese text.
    lead2 = re.escape(_decoded(encoding, (0xC2, 0xC3)))
    lead3 = re.escape(_decoded(encoding, (0xE2,)))
    second3 = re.escape(_decoded(encoding, (0x80,)))
    cont = re.escape(_decoded(encoding, range(0x80, 0xC0)))
    return re.compile(f"[{lead3}][{second3}][{cont}]|[{lead2}][{cont}]")


_PATTERNS = {enc: _sequence_pattern(enc) for enc in ("cp1252", "mac_roman")}
# A cheap pre-check: lines without any lead character cannot hold mojibake.
_SUSPECT = re.compile(
    "[" + re.escape(_decoded("cp1252", (0xC2, 0xC3, 0xE2)) + _decoded("mac_roman", (0xC2, 0xC3, 0xE2))) + "]"
)


def _acceptable(repaired: str) -> bool:
    code = ord(repaired)
    return 0xA0 <= code <= 0xFF or 0x2010 <= code <= 0x2030


def _repair_sequences(text: str, encoding: str) -> tuple[str, int]:
    count = 0

    def repair(match: re.Match) -> str:
        nonlocal count
        try:
            repaired = match.group().encode(encoding).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return match.group()
        if len(repaired) == 1 and _acceptable(repaired):
            count += 1
            return repaired
        return match.group()

    return _PATTERNS[encoding].sub(repair, text), count


def _fix_line(line: str) -> str:
    fixed = ftfy.fix_text(line, _FTFY_CONFIG)
    for encoding in ("cp1252", "mac_roman"):
        fixed, _ = _repair_sequences(fixed, encoding)
    return fixed


def fix_mojibake(text: str) -> tuple[str, int]:
    """Return (repaired text, number of lines changed). Only lines holding a suspect character are looked at."""
    out, last, changed = [], 0, 0
    for match in _SUSPECT.finditer(text):
        if match.start() < last:
            continue  # in a line already repaired
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.start())
        end = len(text) if end == -1 else end
        line = text[start:end]
        fixed = _fix_line(line)
        out += [text[last:start], fixed]
        changed += fixed != line
        last = end
    if not changed:
        return text, 0
    out.append(text[last:])
    return "".join(out), changed
