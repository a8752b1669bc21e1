"""The clean_text stage on small real folders: skips, errors, deduplication, raw files untouched."""

import hashlib
import json
import shutil

import pandas as pd
import pytest

from conftest import RAW
from farense.cleaning import CleaningOptions, clean_prose
from farense.corpus import CorpusError, DedupOptions, clean_corpus, make_doc_id

OPTIONS = CleaningOptions()
DEDUP = DedupOptions()
PARAGRAPH = (
    "O Sporting Clube Farense foi fundado em Faro e joga de preto e branco desde os primeiros anos, "
    "com um leão no emblema que deu aos adeptos a alcunha de Leões de Faro."
)


def run(raw, tmp_path, options=OPTIONS, dedup=DEDUP):
    corpus, stats = tmp_path / "out" / "corpus.parquet", tmp_path / "out" / "stats.json"
    clean_corpus(raw, corpus, stats, options, dedup)
    return pd.read_parquet(corpus), json.loads(stats.read_text())


def tree_digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_shipped_corpus_is_cleaned_and_left_untouched(tmp_path):
    before = tree_digest(RAW)
    frame, stats = run(RAW, tmp_path)
    assert tree_digest(RAW) == before
    assert stats["files_seen"] >= 15 and len(frame) >= 12
    assert {"txt", "md", "html", "csv", "json", "jsonl"} <= set(frame["format"])
    assert {"utf-8", "utf-8-sig", "cp1252"} <= set(frame["encoding"])
    skipped = {s["path"]: s["reason"] for s in stats["files_skipped"]}
    assert "empty" in skipped["rascunho_vazio.txt"] and "binary" in skipped["imagens/emblema.png"]
    # every step had work to do on the shipped corpus
    assert all(stats["steps"][step] > 0 for step in stats["steps"] if step != "unicode_nfc"), stats["steps"]
    assert stats["dedup"]["exact_paragraphs_dropped"] > 0 and stats["dedup"]["near_paragraphs_dropped"] > 0
    text = "\n".join(frame["text"]) + "\n".join(frame["payload"])
    for damage in ("Ã©", "√°", "\u00ad", "\r", "\u200b", "associa-\n"):
        assert damage not in text
    assert all(t == clean_prose(t, "txt", OPTIONS) for t in frame[frame["kind"] == "prose"]["text"])  # idempotent


def test_cleaning_the_cleaned_corpus_changes_nothing(tmp_path):
    frame, _ = run(RAW, tmp_path / "first")
    again = tmp_path / "again"
    again.mkdir()
    prose = frame[frame["kind"] == "prose"]
    for doc_id, text in zip(prose["doc_id"], prose["text"]):
        (again / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    second, stats = run(again, tmp_path / "second", dedup=DedupOptions(exact=False, near=False))
    assert sorted(second["text"]) == sorted(prose["text"])
    assert all(n == 0 for n in stats["steps"].values()), stats["steps"]


def test_skips_are_warnings_and_reasons_are_recorded(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "bom.txt").write_text(PARAGRAPH)
    (raw / "vazio.txt").write_bytes(b"")
    (raw / "brancos.md").write_text("  \n\n ")
    (raw / "foto.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    (raw / "folha.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00")
    (raw / "notas.rtf").write_text("{\\rtf1 texto}")
    (raw / ".DS_Store").write_bytes(b"Bud1")
    (raw / "estragado.json").write_text('[{"pergunta": "Quando?", ')
    (raw / "tabela.csv").write_text("Equipa;Pontos\nFarense;40\n")
    _, stats = run(raw, tmp_path)
    reasons = {s["path"]: s["reason"] for s in stats["files_skipped"]}
    assert reasons["vazio.txt"] == reasons["brancos.md"] == "empty file"
    assert "binary" in reasons["foto.jpg"] and "binary" in reasons["folha.xlsx"]
    assert "unsupported extension '.rtf'" in reasons["notas.rtf"]
    assert reasons[".DS_Store"] == "hidden file"
    assert "invalid JSON at line 1" in reasons["estragado.json"]
    assert "lacks column(s)" in reasons["tabela.csv"]
    assert stats["documents_written"] == 1


def test_bad_lines_inside_files_are_named(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "p.jsonl").write_text(f'{{"texto": "{PARAGRAPH}"}}\n{{"texto": "truncado\n\n{{"outra": 1}}\n')
    (raw / "qa.json").write_text(
        json.dumps({"faq": [{"q": "Onde joga o Farense?", "a": "No São Luís."}, {"q": "Sem resposta"}]})
    )
    frame, stats = run(raw, tmp_path)
    assert {(w["path"], w.get("line")) for w in stats["warnings"]} >= {("p.jsonl", 2), ("p.jsonl", 4)}
    assert any(w["path"] == "qa.json" and "item 1" in w["message"] for w in stats["warnings"])
    assert json.loads(frame.set_index("source_path").loc["qa.json", "payload"]) == [
        {"question": "Onde joga o Farense?", "answer": "No São Luís.", "item": 0}
    ]


@pytest.mark.parametrize("make", ["missing", "empty", "unusable"])
def test_no_usable_input_stops_with_a_clear_error(tmp_path, make):
    raw = tmp_path / "raw"
    if make != "missing":
        raw.mkdir()
    if make == "unusable":
        (raw / "x.png").write_bytes(b"\x89PNG\x00\x00")
    with pytest.raises(CorpusError, match="raw_dir"):
        run(raw, tmp_path)
    assert not (tmp_path / "out" / "corpus.parquet").exists()


def test_exact_and_near_duplicates_are_dropped_across_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    variant = PARAGRAPH.replace("deu aos adeptos", "valeu aos sócios")  # word 3-gram Jaccard 0.75
    other = (
        "O Estádio de São Luís foi inaugurado em 1923 e continua a ser a casa do clube, no centro da cidade de Faro."
    )
    (raw / "a.txt").write_text(f"{PARAGRAPH}\n\n{other}")
    (raw / "b.md").write_text(f"# Título\n\n{PARAGRAPH.upper()}")  # same words, other case
    (raw / "c.html").write_text(
        f"<p>{variant}</p><p>Um parágrafo novo e diferente sobre a Taça de Portugal de 1990 no Jamor.</p>"
    )
    frame, stats = run(raw, tmp_path)
    texts = frame.set_index("source_path")["text"]
    assert texts["a.txt"] == f"{PARAGRAPH}\n\n{other}"
    assert texts["b.md"] == "Título"  # short headings are never deduplicated
    assert variant not in texts["c.html"] and "Taça de Portugal" in texts["c.html"]
    assert stats["dedup"]["exact_paragraphs_dropped"] == 1 and stats["dedup"]["near_paragraphs_dropped"] == 1
    _, kept = run(raw, tmp_path / "off", dedup=DedupOptions(exact=False, near=False))
    assert kept["dedup"]["exact_paragraphs_dropped"] == kept["dedup"]["near_paragraphs_dropped"] == 0


def test_rows_of_one_table_are_never_near_duplicates(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = "".join(
        f"<tr><td>{season}</td><td>Segunda Liga</td><td>{place}</td><td>Época disputada no Estádio de São Luís, em Faro, com o apoio fiel dos adeptos de sempre</td></tr>"
        for season, place in (("2021/22", "5.º"), ("2022/23", "2.º (promovido)"), ("2023/24", "3.º"))
    )
    (raw / "epocas.html").write_text(
        f"<table><tr><th>Época</th><th>Competição</th><th>Classificação</th><th>Nota</th></tr>{rows}</table>"
    )
    frame, stats = run(raw, tmp_path)
    assert frame.loc[0, "text"].count("Época: ") == 3
    assert stats["dedup"]["near_paragraphs_dropped"] == 0


def test_doc_id_is_stable_and_readable(tmp_path):
    assert make_doc_id("livro/historia.txt") == make_doc_id("livro/historia.txt")
    assert make_doc_id("livro/historia.txt").startswith("historia-")
    assert make_doc_id("a/historia.txt") != make_doc_id("b/historia.txt")
    raw = tmp_path / "raw"
    shutil.copytree(RAW / "biografias", raw)
    first, _ = run(raw, tmp_path / "1")
    (raw / "hassan_nader.txt").write_text(PARAGRAPH)
    second, _ = run(raw, tmp_path / "2")
    assert list(first["doc_id"]) == list(second["doc_id"])


def test_two_workers_write_the_same_corpus_and_leave_no_scratch(tmp_path, monkeypatch):
    import farense.corpus
    import farense.parallel

    raw = tmp_path / "raw"
    shutil.copytree(RAW, raw)
    # Near and exact repeats spread over several files, so that the decision spans workers.
    for i in range(6):
        (raw / f"extra{i}.txt").write_text(
            f"Parágrafo próprio número {i} do ficheiro extra.\n\n{PARAGRAPH}\n\n{PARAGRAPH.upper()}"
        )
    one, stats_one = run(raw, tmp_path / "one")
    monkeypatch.setattr(farense.parallel, "MIN_BYTES_PER_WORKER", 1)  # a pool even for a small corpus
    monkeypatch.setattr(farense.corpus, "TASK_BYTES", 5000)  # many tasks and part files, to test their order
    corpus, stats = tmp_path / "two" / "corpus.parquet", tmp_path / "two" / "stats.json"
    clean_corpus(raw, corpus, stats, OPTIONS, DEDUP, workers=2)
    pd.testing.assert_frame_equal(pd.read_parquet(corpus), one)
    assert json.loads(stats.read_text()) == stats_one
    assert stats_one["dedup"]["exact_paragraphs_dropped"] >= 6
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["corpus.parquet", "stats.json"]


def test_a_failing_file_leaves_no_output_and_no_scratch(tmp_path, monkeypatch):
    import farense.corpus

    raw = tmp_path / "raw"
    shutil.copytree(RAW, raw)
    real = farense.corpus.read_document

    def broken(path, *args):
        if path.name == "estadios.txt":
            raise RuntimeError("disk read failed")
        return real(path, *args)

    monkeypatch.setattr(farense.corpus, "read_document", broken)
    with pytest.raises(RuntimeError, match="disk read failed"):
        run(raw, tmp_path)
    assert list((tmp_path / "out").iterdir()) == []
