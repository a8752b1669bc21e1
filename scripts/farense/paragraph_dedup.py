"""Corpus-wide paragraph deduplication, decided in one vectorised pass after all files are read.

Fingerprints (an exact key and a MinHash signature) of every paragraph are collected while
the files stream through cleaning; `decide` then finds exact repeats and near duplicates over
the whole corpus at once (LSH by sorting, in numpy) and keeps the first occurrence of each,
in file order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dedup import MinHasher, similar_pairs
from .markup import is_table_row

# MinHash estimates are noisy on a handful of shingles: shorter paragraphs, and table rows
# (alike by design), are only compared exactly.
NEAR_DUPLICATE_MIN_WORDS = 12


@dataclass
class Drop:
    kind: str  # "exact" or "near"
    duplicate_of: int  # global index of the paragraph kept
    similarity: float


@dataclass
class ParagraphFingerprints:
    min_chars: int
    hasher: MinHasher = field(default_factory=MinHasher)
    doc_of: list[int] = field(default_factory=list)  # per paragraph: document number
    keys: list[int] = field(default_factory=list)
    near_ok: list[bool] = field(default_factory=list)
    exact_ok: list[bool] = field(default_factory=list)
    signatures: list[np.ndarray] = field(default_factory=list)

    def add_document(self, doc: int, paragraphs: list[str]) -> None:
        signatures, keys = self.hasher.fingerprints(paragraphs)
        self.signatures.append(signatures)
        self.doc_of += [doc] * len(paragraphs)
        self.keys += keys.tolist()
        self.exact_ok += [len(p) >= self.min_chars for p in paragraphs]
        self.near_ok += [
            len(p) >= self.min_chars and len(p.split()) >= NEAR_DUPLICATE_MIN_WORDS and not is_table_row(p) for p in paragraphs
        ]

    def decide(self, exact: bool, near: bool, threshold: float) -> dict[int, Drop]:
        """Global paragraph index -> why it is dropped. The first occurrence always stays."""
        drops: dict[int, Drop] = {}
        n = len(self.keys)
        if not n:
            return drops
        if exact:
            keys = np.array(self.keys, dtype=np.uint64)
            candidates = np.flatnonzero(np.array(self.exact_ok))
            _, first_pos, inverse = np.unique(keys[candidates], return_index=True, return_inverse=True)
            first = candidates[first_pos][inverse]
            for i, kept in zip(candidates.tolist(), first.tolist()):
                if i != kept:
                    drops[i] = Drop("exact", kept, 1.0)
        if near:
            eligible = np.array(self.near_ok) & ~np.isin(np.arange(n), list(drops))
            pairs, sims = similar_pairs(np.concatenate(self.signatures), threshold, eligible)
            # In paragraph order: drop j when it is near an earlier paragraph that was kept.
            for (i, j), sim in zip(pairs.tolist(), sims.tolist()):
                if i not in drops and j not in drops:
                    drops[j] = Drop("near", i, sim)
        return drops
