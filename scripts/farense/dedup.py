"""Exact and near-duplicate detection: text keys, and MinHash signatures with LSH banding.

Signatures use one-permutation hashing (one hash per shingle, spread over `num_perm` bins,
the minimum kept per bin, empty bins filled from their right neighbour), which costs one
hash per shingle instead of `num_perm`: the same estimate of Jaccard similarity at a
fraction of the time. Words are hashed by `word_hashes` (numpy, fixed constants, never
Python's salted hash()), so the same corpus gives the same decisions on every run and machine.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from .parallel import ordered_map
from .word_hashes import splitmix as _splitmix
from .word_hashes import text_keys, word_hashes

_EMPTY = np.uint64(1 << 32)  # larger than any 32-bit bin value
_EMPTY_WORD = np.uint64(0x6A09E667F3BCC909)  # pads a text shorter than a shingle
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)


def exact_key(text: str) -> str:
    """Key that ignores case, punctuation and spacing: two texts with the same key are duplicates."""
    hashes, owner = word_hashes([text])
    return f"{int(text_keys(hashes, owner, 1)[0]):016x}"


class MinHasher:
    """MinHash signatures over word shingles, vectorised with numpy."""

    def __init__(self, num_perm: int = 120, shingle_words: int = 3, seed: int = 1):
        if not 1 <= num_perm <= 255:
            raise ValueError("num_perm must be between 1 and 255")
        if not 1 <= shingle_words <= len(_MIX):
            raise ValueError(f"shingle_words must be between 1 and {len(_MIX)}")
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        self._seed = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)

    def fingerprints(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures, exact keys) of texts: one row of `num_perm` uint32 per text, and each
        text's `exact_key` as a uint64."""
        hashes, owner = word_hashes(texts)
        return self._signatures(hashes, owner, len(texts)), text_keys(hashes, owner, len(texts))

    def signatures(self, texts: list[str]) -> np.ndarray:
        return self._signatures(*word_hashes(texts), len(texts))

    def _shingles(self, hashes: np.ndarray, owner: np.ndarray, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of all word shingles of a batch of texts, and the text each belongs to. A text
        shorter than a shingle is padded with empty words, so every text has one."""
        w = self.shingle_words
        counts = np.bincount(owner, minlength=n_texts)
        padding = np.maximum(0, w - counts)
        if padding.any():
            owner = np.concatenate([owner, np.repeat(np.arange(n_texts), padding)])
            hashes = np.concatenate([hashes, np.full(int(padding.sum()), _EMPTY_WORD)])
            order = np.argsort(owner, kind="stable")  # each text's words, then its padding
            owner, hashes = owner[order], hashes[order]
            counts = counts + padding
        ends = np.cumsum(counts)
        positions = np.arange(len(hashes))
        valid = positions + w <= ends[owner]  # a shingle must not run into the next text
        last = len(hashes) - 1
        acc = np.full(len(hashes), self._seed, dtype=np.uint64)
        for j in range(w):
            acc ^= hashes[np.minimum(positions + j, last)] * _MIX[j]
        return acc[valid], owner[valid].astype(np.uint64)

    def _signatures(self, hashes: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
        k = self.num_perm
        if not n_texts:
            return np.zeros((0, k), dtype=np.uint32)
        shingles, owner = self._shingles(hashes, owner, n_texts)
        hashed = _splitmix(shingles)
        bins = ((hashed >> np.uint64(32)) * np.uint64(k)) >> np.uint64(32)
        values = hashed & np.uint64(0xFFFFFFFF)
        sig = np.full(n_texts * k, _EMPTY, dtype=np.uint64)
        np.minimum.at(sig, owner * np.uint64(k) + bins, values)
        sig = sig.reshape(n_texts, k)
        empty = sig == _EMPTY
        if empty.any():
            # Densify: an empty bin takes the next filled bin to its right (circularly),
            # shifted by the distance, so that two similar texts fill it alike.
            # Column by column, right to left over the row seen twice (for the wrap-around).
            full = ~empty.T
            nearest = np.empty((k, len(sig)), dtype=np.int64)
            current = np.full(len(sig), 2 * k, dtype=np.int64)
            for col in range(2 * k - 1, -1, -1):
                current = np.where(full[col % k], col, current)
                if col < k:
                    nearest[col] = current
            nearest = nearest.T
            distance = (nearest - np.arange(k)).astype(np.uint64)
            borrowed = np.take_along_axis(sig, nearest % k, axis=1)
            sig = np.where(empty, (borrowed + distance * np.uint64(0x61C88647)) & np.uint64(0xFFFFFFFF), sig)
        return sig.astype(np.uint32)


def _band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for LSH: a pair at the threshold becomes a candidate with probability >= 0.98,
    with as few bands (as little work) as that allows."""
    for rows in range(8, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.98:
            return bands, rows
    return num_perm, 1


def _column_groups(num_perm: int, threshold: float) -> list[slice]:
    """Signature columns in LSH bands of `rows` columns, then the columns left over (if any)."""
    bands, rows = _band_layout(threshold, num_perm)
    groups = [slice(b * rows, (b + 1) * rows) for b in range(bands)]
    if bands * rows < num_perm:
        groups.append(slice(bands * rows, num_perm))
    return groups


def _band_key(columns: np.ndarray) -> np.ndarray:
    """One integer per row for a band's columns."""
    mix = _splitmix(np.arange(1, columns.shape[1] + 1, dtype=np.uint64))
    return _splitmix((columns.astype(np.uint64) * mix).sum(axis=1, dtype=np.uint64))


# Rows that share a band key are sorted together; each is paired with this many rows after it.
# A long run means many texts alike in that band (often one very common shingle, not a near
# duplicate): linking neighbours keeps the run connected without pairing all of it.
LSH_RUN_LINKS = 7


def _pair_codes_in_band(keys: np.ndarray, n: int) -> np.ndarray:
    """Pairs (i, j), i < j, of rows with the same key, as codes i * n + j."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    found = []
    for offset in range(1, LSH_RUN_LINKS + 1):
        same = keys[offset:] == keys[:-offset]
        if not same.any():
            break
        left, right = order[:-offset][same], order[offset:][same]
        found.append(np.minimum(left, right).astype(np.int64) * n + np.maximum(left, right))
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (by sorting: numpy's hash-based unique is slower on these)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


# Candidate pairs are verified in batches of about this many, so that memory holds one batch
# (about 50 bytes each) however many candidates a corpus yields.
CANDIDATE_BATCH = 1_000_000


def _band_codes(group: slice, load, eligible: np.ndarray | None) -> np.ndarray:
    """Candidate pairs of one band, as codes over the eligible rows. Runs in a worker."""
    columns = load(group)
    if eligible is not None:
        columns = columns[eligible]
    return _pair_codes_in_band(_band_key(columns), len(columns))


def _candidate_batches(band_codes, n: int):
    """Pairs (i, j), i < j, that share a key in a band (`band_codes` yields each band's codes),
    in batches of distinct pairs. A pair found in several bands may come in more than one batch."""
    pending: list[np.ndarray] = []
    pending_size = 0
    for band in band_codes:
        pending.append(band)
        pending_size += len(band)
        if pending_size >= CANDIDATE_BATCH:
            codes, pending, pending_size = _distinct(np.concatenate(pending)), [], 0
            yield np.stack([codes // n, codes % n], axis=1)
    if pending_size:
        codes = _distinct(np.concatenate(pending))
        yield np.stack([codes // n, codes % n], axis=1)


def _verify(
    pairs: np.ndarray, groups: list[slice], load, num_perm: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose share of equal signature columns reaches the threshold, and that share.

    Columns are compared group by group; a pair that could no longer reach the threshold even
    if every column left matched is dropped (most candidates, soon). Runs in a worker."""
    left, right, index = pairs[:, 0], pairs[:, 1], np.arange(len(pairs))
    equal = np.zeros(len(pairs), dtype=np.uint8)  # at most num_perm <= 255
    remaining = num_perm
    for group in groups:
        columns = load(group)
        for c in range(columns.shape[1]):
            column = np.ascontiguousarray(columns[:, c])
            equal += column[left] == column[right]
        remaining -= columns.shape[1]
        keep = (equal + remaining) / num_perm >= threshold
        if not keep.all():
            left, right, index, equal = left[keep], right[keep], index[keep], equal[keep]
    return pairs[index], equal / num_perm


def _similar_pairs_by_columns(
    n: int, num_perm: int, threshold: float, load, eligible: np.ndarray | None, workers: int = 1
):
    """LSH over column groups that `load(group)` returns one at a time (all rows, that group's
    columns): candidates from each band, verified in batches against all the columns. Memory
    holds one group of columns and one batch of candidates, never the whole signature matrix.
    With `workers` > 1 (and a picklable `load`), bands and each batch's verification are
    shared out between processes."""
    rows = np.arange(n) if eligible is None else np.flatnonzero(eligible)
    groups = _column_groups(num_perm, threshold)
    bands, _ = _band_layout(threshold, num_perm)
    verify = partial(_verify, groups=groups, load=load, num_perm=num_perm, threshold=threshold)
    found, sims = [np.zeros((0, 2), dtype=np.int64)], [np.zeros(0)]
    if len(rows) >= 2:
        band_codes = ordered_map(partial(_band_codes, load=load, eligible=eligible), groups[:bands], workers)
        for local in _candidate_batches(band_codes, len(rows)):
            chunks = np.array_split(rows[local], workers)
            for pairs, similarity in ordered_map(verify, chunks, workers):
                found.append(pairs)
                sims.append(similarity)
    pairs, sims = np.concatenate(found), np.concatenate(sims)
    _, first = np.unique(pairs[:, 0] * n + pairs[:, 1], return_index=True)  # a pair verified in two batches once
    pairs, sims = pairs[first], sims[first]
    order = np.lexsort((pairs[:, 0], pairs[:, 1]))
    return pairs[order], sims[order]


def similar_pairs(
    signatures: np.ndarray, threshold: float, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i < j, of rows whose estimated similarity reaches the threshold, with
    that similarity, sorted by j then i. Only `eligible` rows (a boolean mask) take part."""
    return _similar_pairs_by_columns(
        len(signatures), signatures.shape[1], threshold, lambda group: signatures[:, group], eligible
    )


class _GroupFiles:
    """Reads one column group of a SignatureStore from its file: picklable, so that workers
    read the files themselves."""

    def __init__(self, paths: list, groups: list[slice], rows: int):
        self.paths, self.groups, self.rows = [str(p) for p in paths], groups, rows

    def __call__(self, group: slice) -> np.ndarray:
        width = group.stop - group.start
        return np.fromfile(self.paths[self.groups.index(group)], dtype=np.uint32).reshape(self.rows, width)


class SignatureStore:
    """MinHash signatures kept on disk, one file per LSH band (and one for the columns left
    over), so that a corpus-wide near-duplicate search holds one band in memory at a time.

    Rows are appended as texts stream by; `similar_pairs` then answers as the in-memory
    function does. Files live in a scratch folder beside the stage's output and are removed
    on close.
    """

    def __init__(self, folder, threshold: float, num_perm: int = 120):
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=".signatures.", dir=folder))
        self.threshold = threshold
        self.num_perm = num_perm
        self.groups = _column_groups(num_perm, threshold)
        self.paths = [self.dir / f"group{i:03d}.u32" for i in range(len(self.groups))]
        self._handles = [open(path, "wb") for path in self.paths]
        self.rows = 0

    def append(self, signatures: np.ndarray) -> None:
        if signatures.shape[1] != self.num_perm:
            raise ValueError(f"signatures have {signatures.shape[1]} columns, the store {self.num_perm}")
        for handle, group in zip(self._handles, self.groups):
            handle.write(np.ascontiguousarray(signatures[:, group], dtype=np.uint32).tobytes())
        self.rows += len(signatures)

    def similar_pairs(self, eligible: np.ndarray | None = None, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
        for handle in self._handles:
            handle.flush()
        load = _GroupFiles(self.paths, self.groups, self.rows)
        return _similar_pairs_by_columns(self.rows, self.num_perm, self.threshold, load, eligible, workers)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
