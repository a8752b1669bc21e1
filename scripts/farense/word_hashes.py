"""The words of texts as 64-bit hashes, computed on UTF-8 bytes with numpy.

A word is a run of `\\w` characters of the casefolded text, as the regex `\\w+` finds them.
Most texts need no Python object per word: their casefolded UTF-8 has the ASCII non-word
bytes turned into spaces, and when every other byte belongs to a Latin-1 letter (À to ÿ, the
letters of Portuguese) the words are the runs of non-space bytes. Other texts (« », dashes,
other scripts) take the regex. A word's hash is a polynomial over its bytes, for all words at
once from prefix sums, finalised by splitmix64: the same on every run and machine, unlike
Python's salted hash().
"""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"\w+")
_ASCII_NON_WORD_TO_SPACE = bytes(b if chr(b).isalnum() or b == 0x5F or b >= 0x80 else 0x20 for b in range(256))
# ASCII, and the UTF-8 of À-ÿ (lead byte 0xC3, then 0x80-0xBF) less × (0xC3 0x97) and ÷ (0xC3 0xB7).
_FAST_PATH_BYTES = bytes(range(0x80)) + b"\xc3" + bytes(b for b in range(0x80, 0xC0) if b not in (0x97, 0xB7))

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_P = 0x100000001B3  # odd, so invertible modulo 2**64
_P_INVERSE = pow(_P, -1, 1 << 64)


def splitmix(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser: every output bit depends on every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def word_bytes(text: str) -> bytes:
    """The text's words, casefolded, in UTF-8, with spaces (one or more) between them."""
    folded = text.casefold()
    data = folded.encode("utf-8")
    if not data.translate(None, _FAST_PATH_BYTES):
        return data.translate(_ASCII_NON_WORD_TO_SPACE)
    return " ".join(_WORD.findall(folded)).encode("utf-8")


class _Powers:
    """P**(k+1) and P**-(k+1) modulo 2**64 for k < n, grown on demand and kept."""

    def __init__(self):
        self.up = self.down = np.zeros(0, dtype=np.uint64)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n > len(self.up):
            size = max(n, 2 * len(self.up), 1 << 16)
            self.up = np.cumprod(np.full(size, _P, dtype=np.uint64))
            self.down = np.cumprod(np.full(size, _P_INVERSE, dtype=np.uint64))
        return self.up[:n], self.down[:n]


_powers = _Powers()


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word, index of the text it is in), the words in text order."""
    parts = [word_bytes(t) for t in texts]
    data = np.frombuffer(b" ".join(parts), dtype=np.uint8)  # a space between texts: no word spans two
    text_starts = np.cumsum([0] + [len(p) + 1 for p in parts[:-1]])
    edges = np.diff(np.concatenate(([0], data != 0x20, [0])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    up, down = _powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * up, out=prefix[1:])  # byte k weighted by P**(k+1); sums wrap modulo 2**64
    # sum of byte[s + j] * P**j over a word starting at s: its hash wherever it stands
    polynomial = (prefix[ends] - prefix[starts]) * down[starts]
    hashes = splitmix(polynomial ^ ((ends - starts).astype(np.uint64) * _GOLDEN))
    owner = np.searchsorted(text_starts, starts, side="right") - 1
    return hashes, owner


def text_keys(hashes: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """One 64-bit key per text from its sequence of word hashes: texts with the same words in
    the same order (whatever their case, punctuation and spacing) have the same key."""
    counts = np.bincount(owner, minlength=n_texts)
    first = np.cumsum(counts) - counts
    position = (np.arange(len(hashes)) - first[owner]).astype(np.uint64)
    terms = splitmix(hashes + (position + np.uint64(1)) * _GOLDEN)
    sums = np.concatenate(([np.uint64(0)], np.cumsum(terms, dtype=np.uint64)))
    return splitmix((sums[first + counts] - sums[first]) ^ counts.astype(np.uint64))
