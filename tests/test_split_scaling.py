"""The data stages at scale: the same bytes whatever the number of workers and batches, and the
fast paths (sentence boundaries, chunk windows, array union-find) agree with plain references."""

import json
import random
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import farense.parallel
from conftest import ROOT
from farense import records as records_module
from farense import splitting as splitting_module
from farense.records import RecordOptions, build_records, chunk_document, split_sentences
from farense.split_groups import assign_splits, connected_components, group_records
from farense.split_options import SPLITS, SplitOptions
from farense.splitting import split_jsonl
from test_splitting import _records_file

SCHEMA = ROOT / "config" / "schemas" / "jsonl_chat.schema.yaml"


# ---------------------------------------------------------------- plain references


_PLAIN_BOUNDARY = re.compile(r"([.!?…]+[»\"”')\]]*)\s+(?=[«\"“(\[]?[A-ZÀ-ÖØ-Ý0-9])")


def reference_sentences(paragraph: str) -> list[str]:
    """Sentence splitting as first written: the word before every full stop is looked at."""
    sentences, start = [], 0
    for match in _PLAIN_BOUNDARY.finditer(paragraph):
        before = paragraph[max(start, match.start(1) - 40) : match.start(1)]
        last_word = before.rsplit(None, 1)[-1] if before.strip() else ""
        token = last_word.lower().lstrip('(«"“')
        if match.group(1).startswith(".") and (
            token in records_module._ABBREVIATIONS or (len(token) == 1 and token.isalpha())
        ):
            continue
        sentences.append(paragraph[start : match.end(1)].strip())
        start = match.end()
    if paragraph[start:].strip():
        sentences.append(paragraph[start:].strip())
    return sentences


def reference_chunks(text: str, size: int, overlap: int) -> list[str]:
    """Chunk windows as first written: unit by unit."""
    units = []
    for number, paragraph in enumerate(p for p in text.split("\n\n") if p.strip()):
        for sentence in split_sentences(paragraph):
            pieces = records_module._hard_split(sentence, size) if len(sentence) > size else [sentence]
            units.extend((number, piece) for piece in pieces)
    chunks, start = [], 0
    while start < len(units):
        end, length = start, 0
        while end < len(units) and (end == start or length + 1 + len(units[end][1]) <= size):
            length += len(units[end][1]) + (1 if end > start else 0)
            end += 1
        window = units[start:end]
        chunks.append(
            "".join(("" if i == 0 else "\n" if n != window[i - 1][0] else " ") + s for i, (n, s) in enumerate(window))
        )
        if end >= len(units):
            break
        back, kept = end, 0
        while back - 1 > start and kept + len(units[back - 1][1]) <= overlap:
            back -= 1
            kept += len(units[back][1])
        start = back
    return chunks


def reference_components(n: int, links) -> list[int]:
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def messy_texts(seed: int, count: int) -> list[str]:
    """Short texts dense in what sentence splitting must get right."""
    rng = random.Random(seed)
    pieces = [
        "Sr.",
        "sr.",
        "Prof.",
        "n.º",
        "S.C.",
        "J.",
        "etc...",
        "((a.",
        "«Sr.",
        "1990.",
        "Faro.",
        "palavra",
        "İ.",
        "o",
        "?!",
        "…",
        "» ",
        ") ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\u00a0",
        "\u2028",
        "Depois",
        "A",
        "É",
        "(Ver",
        "«Sim",
        "7",
        ".",
        "!",
    ]
    return [
        "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(0, 40))) for _ in range(count)
    ]


# ---------------------------------------------------------------- sentences and chunks


def test_sentences_match_the_word_by_word_reference():
    shipped = [
        p for path in (ROOT / "resources/raw").rglob("*.txt") for p in path.read_text(errors="ignore").split("\n\n")
    ]
    for paragraph in shipped + messy_texts(1, 20000):
        assert split_sentences(paragraph) == reference_sentences(paragraph), paragraph


@pytest.mark.parametrize("size, overlap", [(1000, 200), (120, 0), (60, 59), (40, -5)])
def test_chunks_match_the_unit_by_unit_reference(size, overlap):
    texts = [path.read_text(errors="ignore") for path in (ROOT / "resources/raw").rglob("*.txt")] + messy_texts(2, 3000)
    for text in texts:
        assert chunk_document(text, size, overlap) == reference_chunks(text, size, overlap)


# ---------------------------------------------------------------- grouping


def test_array_union_find_matches_the_plain_one():
    rng = np.random.default_rng(0)
    for n, k in ((1, 0), (10, 3), (200, 150), (2000, 1900), (2000, 4000)):
        links = rng.integers(0, n, size=(k, 2))
        chain = np.stack([np.arange(n - 1, 0, -1), np.arange(n - 2, -1, -1)], axis=1)[
            : n // 3
        ]  # a long path, found backwards
        links = np.concatenate([links, chain]).astype(np.int64)
        assert connected_components(n, links).tolist() == reference_components(n, links.tolist())


def test_groups_join_keys_texts_and_near_pairs_under_their_smallest_index():
    group_keys = np.array([5, 7, 5, 9, 10, 11])
    exact_keys = np.array([1, 2, 3, 2, 4, 5], dtype=np.uint64)
    near = np.array([[4, 5]])
    assert group_records(group_keys, exact_keys, near).tolist() == [0, 1, 0, 1, 4, 4]


def test_assignment_keeps_components_whole_and_is_seeded():
    components = np.array([0, 0, 2, 3, 3, 3, 6, 7, 8, 9, 10, 11])
    kinds = np.array([0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1])
    options = SplitOptions(valid_fraction=0.25, test_fraction=0.25)
    first = assign_splits(components, kinds, options)
    assert (first == assign_splits(components, kinds, options)).all()
    for component in np.unique(components):
        assert len(set(first[components == component].tolist())) == 1
    assert set(first.tolist()) == {0, 1, 2}


# ---------------------------------------------------------------- whole stages: same bytes


def test_build_records_gives_the_same_records_with_workers_and_small_batches(built_data, tmp_path, monkeypatch):
    corpus = built_data / "results/clean/corpus.parquet"
    build_records(corpus, tmp_path / "one.parquet", tmp_path / "one.json", RecordOptions())
    monkeypatch.setattr(records_module, "_BATCH_BYTES", 3000)  # many tasks, to test their order
    monkeypatch.setattr(farense.parallel, "MIN_BYTES_PER_WORKER", 1)  # a pool even for a small corpus
    build_records(corpus, tmp_path / "two.parquet", tmp_path / "two.json", RecordOptions(), workers=2)
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "two.parquet"))
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def test_split_gives_the_same_bytes_with_workers_row_groups_and_several_buckets(built_data, tmp_path, monkeypatch):
    records = built_data / "results/data/records.parquet"
    many_groups = tmp_path / "records.parquet"  # row groups of 50 records: many tasks, to test their order
    pq.write_table(pq.read_table(records), many_groups, row_group_size=50)
    outputs = ("train.jsonl", "valid.jsonl", "test.jsonl", "split_stats.json")
    monkeypatch.setattr(splitting_module, "_BUCKET_BYTES", 20_000)
    monkeypatch.setattr(farense.parallel, "MIN_BYTES_PER_WORKER", 1)  # a pool even for a small corpus
    for name, source, workers in (("one", records, 1), ("w1", many_groups, 1), ("w2", many_groups, 2)):
        out = tmp_path / name
        split_jsonl(source, out, out / "split_stats.json", SCHEMA, SplitOptions(), workers=workers)
        assert sorted(p.name for p in out.iterdir()) == sorted(outputs)  # no scratch file left behind
    for name in outputs:
        assert (
            (tmp_path / "one" / name).read_bytes()
            == (tmp_path / "w1" / name).read_bytes()
            == (tmp_path / "w2" / name).read_bytes()
        )
    stats = json.loads((tmp_path / "w1" / "split_stats.json").read_text())
    assert sum(stats["splits"][s]["records"] for s in SPLITS) == len(pd.read_parquet(records).query("not conflict"))


def test_a_text_with_other_line_separators_stays_one_line(tmp_path):
    rows = [
        (f"Pergunta {i} sobre o Farense?", f"Resposta {i}:\u2028linha seguinte\u0085e outra {i * 13}.")
        for i in range(20)
    ]
    records = _records_file(tmp_path / "records.parquet", rows)
    out = tmp_path / "out"
    split_jsonl(records, out, out / "split_stats.json", SCHEMA, SplitOptions())
    lines = [line for s in SPLITS for line in (out / f"{s}.jsonl").read_bytes().split(b"\n") if line]
    assert len(lines) == 20 and all(json.loads(line)["messages"][1]["content"].startswith("Resposta") for line in lines)
