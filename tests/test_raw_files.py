"""What is read from raw_dir: no link out of it, no FIFO, each file once; a file changed while read stops the stage."""

import json
import os
import signal

import pyarrow.parquet as pq
import pytest

from conftest import snakemake
from farense import corpus
from farense.cleaning import CleaningOptions
from farense.corpus import CorpusError, DedupOptions, clean_corpus
from farense.raw_files import scan

SECRET = "root:x:0:0:segredo-do-servidor:/root:/bin/bash"


@pytest.fixture
def hostile(tmp_path):
    """A raw folder with a regular file, links in and out, a broken link, a linked folder and a FIFO."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text(SECRET + "\n", encoding="utf-8")
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    (raw / "historia.txt").write_text(
        "O Farense foi fundado em 1910 na cidade de Faro, no Algarve, por um grupo de jovens.\n", encoding="utf-8"
    )
    (raw / "sub" / "estadio.txt").write_text(
        "O Estádio de São Luís foi inaugurado em 1923 e leva hoje cerca de sete mil pessoas.\n", encoding="utf-8"
    )
    os.symlink(outside / "passwd.txt", raw / "senhas.txt")
    os.symlink(raw / "historia.txt", raw / "copia.txt")
    os.symlink(raw / "nada.txt", raw / "partida.txt")
    os.symlink(outside, raw / "pasta_de_fora")
    os.symlink(raw / "sub", raw / "atalho")
    os.mkfifo(raw / "fila.txt")
    return raw


def reasons(skipped):
    return {s["path"]: s["reason"] for s in skipped}


def test_scan_reads_each_file_once_and_nothing_outside(hostile):
    signal.alarm(30)  # opening the FIFO would block forever: fail instead
    try:
        files, skipped = scan(hostile)
    finally:
        signal.alarm(0)
    assert [p.relative_to(hostile).as_posix() for p in files] == ["historia.txt", "sub/estadio.txt"]
    why = reasons(skipped)
    assert (
        why["senhas.txt"].startswith("link to ")
        and "outside raw_dir (cleaning.allow_outside_links is off)" in why["senhas.txt"]
    )
    assert why["copia.txt"] == "link to historia.txt, read once under its own name"
    assert why["partida.txt"].startswith("broken link")
    assert why["fila.txt"] == "a FIFO, not opened"
    assert why["pasta_de_fora"].startswith("link to a folder, not followed: its files are outside raw_dir")
    assert why["atalho"] == "link to a folder, not followed: its files are inside raw_dir, read under their own names"
    allowed, _ = scan(hostile, allow_outside_links=True)
    assert "senhas.txt" in [p.relative_to(hostile).as_posix() for p in allowed]


def test_the_pipeline_leaves_the_outside_file_out_and_says_why(workflow, hostile):
    signal.alarm(300)
    try:
        snakemake(workflow, "results/clean/corpus.parquet", "--config", f"raw_dir={hostile}")
    finally:
        signal.alarm(0)
    texts = "\n".join(pq.read_table(workflow / "results/clean/corpus.parquet").column("text").to_pylist())
    assert "segredo-do-servidor" not in texts and "1910" in texts and "sete mil" in texts
    stats = json.loads((workflow / "results/clean/stats.json").read_text())
    assert set(reasons(stats["files_skipped"])) >= {
        "senhas.txt",
        "copia.txt",
        "partida.txt",
        "fila.txt",
        "pasta_de_fora",
        "atalho",
    }
    assert stats["documents_written"] == 2
    # nor does the lineage read it: it is no input of the job
    entry = json.loads((workflow / "results/lineage/clean_text.json").read_text())
    assert not any("senhas" in i["path"] for i in entry["inputs"])
    # asked for, the linked file is read
    signal.alarm(300)
    try:
        snakemake(
            workflow,
            "results/clean/corpus.parquet",
            "--config",
            f"raw_dir={hostile}",
            'cleaning={"allow_outside_links": true}',
        )
    finally:
        signal.alarm(0)
    assert SECRET.split(":")[4] in "\n".join(
        pq.read_table(workflow / "results/clean/corpus.parquet").column("text").to_pylist()
    )


def test_a_file_changed_while_read_stops_the_stage_and_writes_nothing(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    texts = (
        "O Farense foi fundado em 1910 na cidade de Faro.",
        "O Estádio de São Luís abriu em 1923.",
        "Paco Fortes treinou a equipa em 1994/95.",
    )
    for i, text in enumerate(texts):
        (raw / f"texto{i}.txt").write_text(text + "\n", encoding="utf-8")
    read_document = corpus.read_document

    def read_then_edit(path, *args, **kwargs):  # another program appends to the file just after the stage read it
        row = read_document(path, *args, **kwargs)
        if path.name == "texto1.txt":
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("Uma linha acrescentada a meio.\n")
        return row

    monkeypatch.setattr(corpus, "read_document", read_then_edit)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        CorpusError, match=r"changed while clean_text read them: texto1\.txt; nothing was written, run again"
    ):
        clean_corpus(raw, out / "corpus.parquet", out / "stats.json", CleaningOptions(), DedupOptions(), workers=1)
    assert sorted(p.name for p in out.iterdir()) == []
    monkeypatch.setattr(corpus, "read_document", read_document)  # run again: it completes
    clean_corpus(raw, out / "corpus.parquet", out / "stats.json", CleaningOptions(), DedupOptions(), workers=1)
    assert pq.read_table(out / "corpus.parquet").num_rows == 3
