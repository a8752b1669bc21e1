"""Exact and near-duplicate detection: normalised keys, and MinHash with LSH banding.

Hashes are derived from crc32 and fixed seeds, never from Python's salted hash(), so the
same corpus gives the same decisions on every run and machine.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def exact_key(text: str) -> str:
    """Key that ignores case, punctuation and spacing: two texts with the same key are duplicates."""
    return hashlib.sha1(" ".join(words(text)).encode("utf-8")).hexdigest()


class MinHasher:
    """MinHash signatures over word shingles (multiply-shift hashing, vectorised with numpy)."""

    def __init__(self, num_perm: int = 120, shingle_words: int = 3, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self._mix = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5][:shingle_words], dtype=np.uint64)
        self._word_cache: dict[str, int] = {}

    def _word_hashes(self, tokens: list[str]) -> np.ndarray:
        cache = self._word_cache
        out = []
        for token in tokens:
            value = cache.get(token)
            if value is None:
                value = zlib.crc32(token.encode("utf-8"))
                if len(cache) < 2_000_000:  # bounded: rare words are simply rehashed
                    cache[token] = value
            out.append(value)
        return np.array(out, dtype=np.uint64)

    def _shingles(self, word_hashes: np.ndarray) -> np.ndarray:
        k = self.shingle_words
        if len(word_hashes) < k:
            # Short text: a single shingle of all its words (padded mixing keeps it distinct).
            padded = np.zeros(k, dtype=np.uint64)
            padded[: len(word_hashes)] = word_hashes
            word_hashes = padded
        n = len(word_hashes) - k + 1
        acc = np.zeros(n, dtype=np.uint64)
        for j in range(k):
            acc = acc ^ (word_hashes[j : j + n] * self._mix[j])
        return acc

    def signatures(self, texts: list[str]) -> np.ndarray:
        """One row of `num_perm` uint32 minima per text (texts may be empty)."""
        if not texts:
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        parts = [self._shingles(self._word_hashes(words(t))) for t in texts]
        lengths = np.array([len(p) for p in parts])
        shingles = np.concatenate(parts)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        # Chunk the (shingles x perms) product so memory stays bounded for long texts.
        step = max(1, 262_144 // self.num_perm)
        for lo in range(0, len(texts), step):
            hi = min(len(texts), lo + step)
            a, b = int(starts[lo]), int(starts[hi - 1] + lengths[hi - 1])
            hashed = (shingles[a:b, None] * self._a[None, :] + self._b[None, :]) >> np.uint64(32)
            out[lo:hi] = np.minimum.reduceat(hashed, starts[lo:hi] - a, axis=0).astype(np.uint32)
        return out


def similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    return float(np.mean(sig_a == sig_b))


class NearDuplicateIndex:
    """LSH over MinHash signatures; `find` returns the first indexed item similar enough."""

    def __init__(self, threshold: float, num_perm: int = 120, bands: int = 40):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.threshold = threshold
        self.bands = bands
        self.rows = num_perm // bands
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
        self._signatures: list[np.ndarray] = []
        self.labels: list = []

    def _keys(self, signature: np.ndarray):
        for band in range(self.bands):
            yield band, signature[band * self.rows : (band + 1) * self.rows].tobytes()

    def find(self, signature: np.ndarray):
        """(label, similarity) of the most similar indexed item at or over the threshold, else None."""
        best, best_sim = None, self.threshold
        seen = set()
        for band, key in self._keys(signature):
            for item in self._buckets[band].get(key, ()):
                if item in seen:
                    continue
                seen.add(item)
                sim = similarity(signature, self._signatures[item])
                if sim >= best_sim:
                    best, best_sim = item, sim
        return None if best is None else (self.labels[best], best_sim)

    def find_all(self, signature: np.ndarray) -> list:
        """Labels of every indexed item at or over the threshold."""
        found, seen = [], set()
        for band, key in self._keys(signature):
            for item in self._buckets[band].get(key, ()):
                if item not in seen:
                    seen.add(item)
                    if similarity(signature, self._signatures[item]) >= self.threshold:
                        found.append(self.labels[item])
        return found

    def add(self, signature: np.ndarray, label) -> None:
        item = len(self._signatures)
        self._signatures.append(signature)
        self.labels.append(label)
        for band, key in self._keys(signature):
            self._buckets[band].setdefault(key, []).append(item)
