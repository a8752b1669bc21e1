"""Near-duplicate search: the on-disk, band-by-band store answers as the in-memory search does."""

import numpy as np

from conftest import RAW
from farense.dedup import MinHasher, SignatureStore, similar_pairs


def _texts():
    paragraphs = [p for path in sorted(RAW.rglob("*.txt")) for p in path.read_text(errors="ignore").split("\n\n") if len(p.split()) > 8]
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


def test_words_on_bytes_are_the_regex_words():
    import re

    from farense.dedup import _word_bytes

    texts = _texts()[:200] + [
        "«Leões de Faro» — 1994/95: 4-1, o_Farense…", "ÉPOCA Nº 1 ª 2.º", "tab\there\x1fsep", "", "— «»", "straße ǅ ﬁm",
    ]
    for text in texts:
        assert _word_bytes(text) == [w.encode() for w in re.findall(r"\w+", text.casefold())]
