"""Duplicate detection: words and their hashes, text keys, and the on-disk band-by-band search
answering as the in-memory one does."""

import re

import numpy as np

from conftest import RAW
from farense.dedup import MinHasher, SignatureStore, exact_key, similar_pairs
from farense.word_hashes import text_keys, word_bytes, word_hashes


def _texts():
    paragraphs = [
        p
        for path in sorted(RAW.rglob("*.txt"))
        for p in path.read_text(errors="ignore").split("\n\n")
        if len(p.split()) > 8
    ]
    # near copies: one word changed
    return paragraphs + [p.replace(" o ", " um ", 1) for p in paragraphs[::5]]


def test_store_finds_the_same_pairs_as_memory(tmp_path):
    signatures = MinHasher().signatures(_texts())
    eligible = np.ones(len(signatures), dtype=bool)
    eligible[::7] = False
    for threshold in (0.5, 0.7):
        expected = similar_pairs(signatures, threshold, eligible)
        with SignatureStore(tmp_path, threshold) as store:
            for lo in range(0, len(signatures), 37):  # appended in uneven batches, as documents come
                store.append(signatures[lo : lo + 37])
            pairs, sims = store.similar_pairs(eligible)
        assert len(expected[0]) > 10
        np.testing.assert_array_equal(pairs, expected[0])
        np.testing.assert_allclose(sims, expected[1])
        assert eligible[pairs].all()
    assert list(tmp_path.iterdir()) == []  # the store's files are gone


TRICKY = [
    "«Leões de Faro» — 1994/95: 4-1, o_Farense…",
    "ÉPOCA Nº 1 ª 2.º × 3 ÷ 4",
    "tab\there\x1fsep",
    "",
    "— «»",
    "straße ǅ ﬁm",
    "São Luís",
]


def test_word_bytes_hold_the_regex_words():
    for text in _texts()[:300] + TRICKY:
        assert word_bytes(text).split() == [w.encode() for w in re.findall(r"\w+", text.casefold())]


def _reference_hash(word: bytes) -> int:
    """The word hash computed plainly, byte by byte."""
    mask = (1 << 64) - 1
    value = sum(b * pow(0x100000001B3, j, 1 << 64) for j, b in enumerate(word)) & mask
    x = (value ^ (len(word) * 0x9E3779B97F4A7C15)) & mask
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_word_hashes_are_the_words_own_wherever_they_stand():
    texts = _texts()[:200] + TRICKY
    hashes, owner = word_hashes(texts)
    words = [w.encode() for t in texts for w in re.findall(r"\w+", t.casefold())]
    assert owner.tolist() == [i for i, t in enumerate(texts) for _ in re.findall(r"\w+", t.casefold())]
    assert [int(h) for h in hashes] == [_reference_hash(w) for w in words]
    assert len(set(words)) == len(set(hashes.tolist()))  # no two words of this corpus collide


def test_text_keys_ignore_case_punctuation_and_spacing_but_not_order():
    texts = ["O Farense venceu em casa.", "o  FARENSE, venceu em casa!", "Em casa venceu o Farense.", ""]
    keys = text_keys(*word_hashes(texts), len(texts))
    assert keys[0] == keys[1] and keys[0] != keys[2] and keys[3] not in keys[:3]
    assert exact_key(texts[0]) == exact_key(texts[1]) == f"{int(keys[0]):016x}"


def test_candidates_verified_in_small_batches_give_the_same_pairs(monkeypatch):
    import farense.dedup

    signatures = MinHasher().signatures(_texts())
    expected = similar_pairs(signatures, 0.5)
    monkeypatch.setattr(farense.dedup, "CANDIDATE_BATCH", 50)  # many batches, pairs found again in later ones
    pairs, sims = similar_pairs(signatures, 0.5)
    np.testing.assert_array_equal(pairs, expected[0])
    np.testing.assert_allclose(sims, expected[1])


def test_two_workers_find_the_same_pairs_in_the_store(tmp_path, monkeypatch):
    import farense.dedup

    signatures = MinHasher().signatures(_texts())
    expected = similar_pairs(signatures, 0.5)
    monkeypatch.setattr(farense.dedup, "CANDIDATE_BATCH", 200)  # several batches, each split between the workers
    with SignatureStore(tmp_path, 0.5) as store:
        store.append(signatures)
        pairs, sims = store.similar_pairs(workers=2)
    np.testing.assert_array_equal(pairs, expected[0])
    np.testing.assert_allclose(sims, expected[1])
