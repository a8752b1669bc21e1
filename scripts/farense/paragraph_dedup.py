"""Corpus-wide paragraph deduplication, decided in one vectorised pass after all files are read.

Each document's paragraphs are fingerprinted where the document is cleaned (an exact key and
a MinHash signature: `fingerprint_paragraphs`, run in the worker processes); the index
collects them in file order, signatures on disk and a few bytes per paragraph in memory;
`decide` then finds exact repeats and near duplicates over the whole corpus at once (LSH by
sorting, one band at a time) and keeps the first occurrence of each, in file order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dedup import MinHasher, SignatureStore
from .markup import is_table_row

# MinHash estimates are noisy on a handful of shingles: shorter paragraphs, and table rows
# (alike by design), are only compared exactly.
NEAR_DUPLICATE_MIN_WORDS = 12

_HASHER = MinHasher()


@dataclass
class Drop:
    kind: str  # "exact" or "near"
    duplicate_of: int  # global index of the paragraph kept
    similarity: float


@dataclass
class DocumentFingerprints:
    signatures: np.ndarray  # (paragraphs, num_perm) uint32
    keys: np.ndarray  # uint64 exact keys
    exact_ok: np.ndarray  # bool: long enough to be compared exactly
    near_ok: np.ndarray  # bool: long enough, and not a table row, to be compared by similarity


def fingerprint_paragraphs(paragraphs: list[str], min_chars: int) -> DocumentFingerprints:
    signatures, keys = _HASHER.fingerprints(paragraphs)
    exact_ok = np.fromiter((len(p) >= min_chars for p in paragraphs), dtype=bool, count=len(paragraphs))
    near_ok = np.fromiter(
        (
            len(p) >= min_chars and len(p.split()) >= NEAR_DUPLICATE_MIN_WORDS and not is_table_row(p)
            for p in paragraphs
        ),
        dtype=bool,
        count=len(paragraphs),
    )
    return DocumentFingerprints(signatures, keys, exact_ok, near_ok)


class ParagraphIndex:
    """The fingerprints of every paragraph seen, in order: signatures in a SignatureStore
    (on disk, in `scratch_dir`), keys and flags in numpy arrays (10 bytes per paragraph).
    A context manager: the scratch files go when it closes."""

    def __init__(self, scratch_dir, threshold: float):
        self.store = SignatureStore(scratch_dir, threshold, num_perm=_HASHER.num_perm)
        self._keys: list[np.ndarray] = []
        self._exact_ok: list[np.ndarray] = []
        self._near_ok: list[np.ndarray] = []
        self.first_of_doc: dict[int, int] = {}  # document number -> global index of its first paragraph
        self.size = 0

    def add_document(self, doc: int, fingerprints: DocumentFingerprints) -> None:
        if not len(fingerprints.keys):
            return
        self.first_of_doc[doc] = self.size
        self.store.append(fingerprints.signatures)
        self._keys.append(fingerprints.keys)
        self._exact_ok.append(fingerprints.exact_ok)
        self._near_ok.append(fingerprints.near_ok)
        self.size += len(fingerprints.keys)

    def docs_of(self, paragraphs: np.ndarray) -> np.ndarray:
        """The document number of each global paragraph index (documents come in order)."""
        starts = np.fromiter(self.first_of_doc.values(), dtype=np.int64, count=len(self.first_of_doc))
        numbers = np.fromiter(self.first_of_doc, dtype=np.int64, count=len(self.first_of_doc))
        return numbers[np.searchsorted(starts, paragraphs, side="right") - 1]

    def decide(self, exact: bool, near: bool, workers: int = 1) -> dict[int, Drop]:
        """Global paragraph index -> why it is dropped. The first occurrence always stays.
        The near-duplicate search shares its work out between `workers` processes."""
        drops: dict[int, Drop] = {}
        if not self.size:
            return drops
        if exact:
            keys = np.concatenate(self._keys)
            candidates = np.flatnonzero(np.concatenate(self._exact_ok))
            _, first_pos, inverse = np.unique(keys[candidates], return_index=True, return_inverse=True)
            first = candidates[first_pos][inverse]
            repeated = candidates != first
            for i, kept in zip(candidates[repeated].tolist(), first[repeated].tolist()):
                drops[i] = Drop("exact", kept, 1.0)
        if near:
            eligible = np.concatenate(self._near_ok)
            eligible[list(drops)] = False
            pairs, sims = self.store.similar_pairs(eligible, workers)
            # In paragraph order: drop j when it is near an earlier paragraph that was kept.
            for (i, j), sim in zip(pairs.tolist(), sims.tolist()):
                if i not in drops and j not in drops:
                    drops[j] = Drop("near", i, sim)
        return drops

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
