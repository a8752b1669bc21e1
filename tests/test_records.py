"""Records: sentences, chunks, questions from the results table, conflicts."""

import json

import pandas as pd
import pytest

from farense.errors import PipelineError
from farense.records import (
    RecordOptions,
    RecordReport,
    answers_agree,
    build_records,
    chunk_document,
    fold,
    mark_conflicts,
    match_questions,
    match_statements,
    first_sentence,
    split_sentences,
)


def test_sentences_respect_abbreviations_and_initials():
    text = "O Sr. Silva chegou em 1990. A equipa do S.C. Farense venceu! J. Nader marcou. Qual foi o 5.º lugar? Sim."
    assert split_sentences(text) == [
        "O Sr. Silva chegou em 1990.",
        "A equipa do S.C. Farense venceu!",
        "J. Nader marcou.",
        "Qual foi o 5.º lugar?",
        "Sim.",
    ]


def test_first_sentence():
    assert first_sentence("O Sr. Silva chegou a Faro. Depois saiu. Fim.") == (
        "O Sr. Silva chegou a Faro.",
        "Depois saiu. Fim.",
    )
    assert first_sentence("Uma só frase") == ("Uma só frase", "")


def test_chunks_hold_whole_sentences_within_size_and_overlap():
    sentences = [f"Frase número {i} sobre a história do Farense em Faro." for i in range(40)]
    text = " ".join(sentences[:20]) + "\n\n" + " ".join(sentences[20:])
    chunks = chunk_document(text, size=300, overlap=120)
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(chunk) <= 300
        assert chunk.startswith("Frase número") and chunk.endswith("Faro.")
    # consecutive chunks share trailing sentences, at most `overlap` characters of them
    for a, b in zip(chunks, chunks[1:]):
        shared = [s for s in split_sentences(b.replace("\n", " ")) if s in a]
        assert shared and sum(len(s) for s in shared) <= 120
    covered = set()
    for chunk in chunks:
        covered.update(split_sentences(chunk.replace("\n", " ")))
    assert covered == set(sentences)
    assert "\n" in next(c for c in chunks if "número 19 " in c and "número 20 " in c)  # paragraph break kept


def test_chunks_without_overlap_partition_the_text_and_long_sentences_are_cut():
    text = "Primeira frase curta. " + "palavra " * 100 + "fim."
    chunks = chunk_document(text, size=120, overlap=0)
    assert all(len(c) <= 120 for c in chunks)
    assert " ".join(chunks).split() == text.split()


ROW = {
    "date": "27/05/1990",
    "season": "1989/90",
    "competition": "Taça de Portugal",
    "home": "Estrela da Amadora",
    "away": "SC Farense",
    "score": "1-1 (a.p.)",
    "line": 7,
}


def test_table_questions_take_farense_side_home_and_away():
    (t1, q1, a1, f1), (t2, q2, a2, f2) = match_questions(ROW, "Farense", ("result", "venue"))
    assert (t1, t2) == ("result", "venue")
    assert q1 == "Qual foi o resultado do Farense contra o Estrela da Amadora em 27 de maio de 1990?"
    assert (
        a1
        == "O Farense empatou 1-1 (a.p.) com o Estrela da Amadora, fora, a 27 de maio de 1990 (Taça de Portugal, época 1989/90)."
    )
    assert f1 == [
        {"kind": "outcome", "value": "draw"},
        {"kind": "score", "value": "1-1"},
        {"kind": "venue", "value": "away"},
        {"kind": "date", "value": "1990-05-27"},
        {"kind": "competition", "value": "Taça de Portugal"},
    ]
    assert a2.startswith("Fora: o Farense jogou no terreno do Estrela da Amadora")
    assert f2 == [{"kind": "venue", "value": "away"}, {"kind": "score", "value": "1-1"}]
    away_loss = dict(ROW, home="Olympique Lyonnais", away="Farense", score="1-0", date="1995-09-12")
    ((_, _, answer, facts),) = match_questions(away_loss, "Farense", ("result",))
    assert answer.startswith("O Farense perdeu com o Olympique Lyonnais por 0-1, fora, a 12 de setembro de 1995")
    assert {"kind": "score", "value": "0-1"} in facts and {"kind": "outcome", "value": "loss"} in facts
    home_win = dict(ROW, home="Farense", away="Olhanense", score="3 - 1")
    (_, _, answer, _), (_, _, venue, _) = match_questions(home_win, "Farense", ("result", "venue"))
    assert answer.startswith("O Farense venceu o Olhanense por 3-1, em casa")
    assert venue.startswith("Em casa: o Farense recebeu o Olhanense") and "3-1 do lado do Farense" in venue
    ((_, question, answer, facts),) = match_questions(home_win, "Farense", ("competition",))
    assert answer == "Na Taça de Portugal, época 1989/90."
    assert facts == [{"kind": "competition", "value": "Taça de Portugal"}, {"kind": "season", "value": "1989/90"}]


def test_the_ending_question_asks_the_result_in_other_words_and_states_its_facts():
    from farense.facts import check

    for row, answer in [
        (
            dict(ROW, home="Farense", away="Olhanense", score="3 - 1"),
            "Com vitória do Farense, 3-1, em casa, num jogo da Taça de Portugal.",
        ),
        (ROW, "Com um empate, 1-1 (a.p.), fora, num jogo da Taça de Portugal."),
        (
            dict(ROW, home="Olympique Lyonnais", away="Farense", score="1-0"),
            "Com derrota do Farense, 0-1, fora, num jogo da Taça de Portugal.",
        ),
    ]:
        (result, _, _, result_facts), (template, question, got, facts) = match_questions(
            row, "Farense", ("result", "ending")
        )
        assert (
            template == "ending"
            and question.startswith("Como acabou o encontro entre o Farense e o ")
            and got == answer
        )
        assert facts == [f for f in result_facts if f["kind"] != "date"]  # the date is in the question
        assert all(f["stated"] for f in check(facts, got))
        wrong = got.replace("vitória", "derrota") if "vitória" in got else got.replace("fora", "em casa")
        assert not all(f["stated"] for f in check(facts, wrong))


def test_match_statements_state_the_facts_of_the_result_question_in_other_words():
    from farense.facts import check, states

    home_win = dict(ROW, home="Farense", away="Olhanense", score="3 - 1")
    ((_, question, answer, facts),) = match_questions(home_win, "Farense", ("result",))
    statements = match_statements(home_win, "Farense", 3)
    assert len(statements) == 3 and len(set(statements)) == 3 and len(match_statements(home_win, "Farense", 2)) == 2
    for text in statements[:2]:  # the first two wordings state every fact of the result question
        assert all(f["stated"] for f in check(facts, text)), text
        assert question not in text and answer not in text
        head, tail = first_sentence(text)
        assert "3-1" in tail and "3-1" not in head  # the result comes after the scene: a continuation asks for it
    assert states({"kind": "score", "value": "3-1"}, statements[2])


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"score": "adiado"}, "score 'adiado'"),
        ({"score": ""}, "score ''"),
        ({"date": "31/02/1990"}, "date '31/02/1990'"),
        ({"home": "Lyon", "away": "Lazio"}, "neither team"),
    ],
)
def test_bad_table_rows_are_refused_with_the_reason(change, reason):
    with pytest.raises(ValueError, match=reason):
        match_questions(dict(ROW, **change), "Farense", ("result",))


def test_answers_agree_on_wording_but_not_on_facts():
    assert answers_agree(
        "O adversário foi o Olympique Lyonnais, que venceu os dois jogos.",
        "O adversário foi o Olympique Lyonnais, que venceu as duas mãos.",
    )
    assert not answers_agree(
        "O Farense foi fundado em 1910, na cidade de Faro.", "O Farense foi fundado em 1912, na cidade de Faro."
    )
    assert not answers_agree("O treinador era Paco Fortes.", "O treinador era Manuel Cajuda.")


def _qa(question, answer, origin):
    return {
        "question": question,
        "answer": answer,
        "question_key": fold(question),
        "origin": origin,
        "conflict": False,
        "kind": "qa_curated",
    }


def test_conflicts_are_flagged_and_repeats_dropped():
    records = [
        _qa("Em que ano foi fundado o Farense?", "Em 1910.", "a#0"),
        _qa("Em que ano foi fundado o Farense ?", "Em 1912.", "b#0"),
        _qa("Onde joga o Farense?", "No Estádio de São Luís.", "a#1"),
        _qa("onde joga o farense", "No Estádio de São Luís.", "b#1"),
    ]
    report = RecordReport()
    kept = mark_conflicts(records, report)
    assert len(kept) == 3 and report.duplicates_dropped == 1
    assert [r["conflict"] for r in kept] == [True, True, False]
    assert report.conflicts[0]["question_key"] == "em que ano foi fundado o farense"
    assert {a["origin"] for a in report.conflicts[0]["answers"]} == {"a#0", "b#0"}


def test_build_records_on_the_cleaned_corpus(built_data):
    records = pd.read_parquet(built_data / "results/data/records.parquet")
    stats = json.loads((built_data / "results/data/records_stats.json").read_text())
    assert set(records["kind"]) == {"chunk", "qa_curated", "qa_table", "table_text"}
    assert records["record_id"].is_unique
    # every match: its questions and two prose wordings share a fact key, one question is its probe
    table = records[records["kind"].isin(["qa_table", "table_text"])]
    per_match = table.groupby("fact_key")["kind"].value_counts().unstack()
    assert (per_match["table_text"] % 2 == 0).all() and (
        per_match["qa_table"] == 2
    ).all()  # a repeated CSV row repeats its wordings
    assert (records[records["kind"] == "qa_table"].groupby("fact_key")["probe"].sum() == 1).all()
    # a curated question is its fact's probe; a rewording of it (perguntas_reformuladas.json,
    # perguntas_variantes.json: "reformula") shares its fact key and is not
    curated = records[records["kind"] == "qa_curated"]
    rewordings = curated["source_path"].str.contains("reformuladas|variantes")
    assert rewordings.sum() == 182 + 273 + 14 and not curated.loc[rewordings, "probe"].any()
    assert curated.loc[~rewordings, "probe"].all() and not records.loc[records["kind"] == "chunk", "probe"].any()
    assert set(curated.loc[rewordings, "fact_key"]) <= set(curated.loc[~rewordings, "fact_key"])
    assert (curated.groupby("fact_key")["probe"].sum() >= 1).all()
    facts = json.loads(
        records[records["question"].str.startswith("Quem era o treinador do Farense em 1994/95")].iloc[0]["facts"]
    )
    assert facts == {
        "answer": [{"kind": "name", "value": "Paco Fortes"}],
        "subject": [{"kind": "season", "value": "1994/95"}],
    }
    assert (records["doc_id"] != "").all()
    chunks = records[records["kind"] == "chunk"]
    assert chunks["text"].str.len().max() <= 1000 and chunks["text"].str.len().min() >= 80
    # the planted conflict: the founding year, 1910 in one file and 1912 in the other
    founding = [c for c in stats["conflicts"] if "fundado" in c["question_key"]]
    assert founding and {"1910", "1912"} <= {
        w for a in founding[0]["answers"] for w in a["answer"].replace(",", " ").split()
    }
    assert records[records["conflict"]]["question_key"].str.contains("fundado").all()
    # the CSV's bad rows are reported with their line numbers
    messages = {(w["line"], w["message"].split(":")[1].strip().split()[0]) for w in stats["warnings"] if "line" in w}
    assert any(m[1] == "score" for m in messages) and any("neither" in w["message"] for w in stats["warnings"])


def test_build_records_refuses_bad_options(built_data, tmp_path):
    corpus = built_data / "results/clean/corpus.parquet"
    with pytest.raises(PipelineError, match="chunk_overlap_chars"):
        build_records(
            corpus,
            tmp_path / "r.parquet",
            tmp_path / "s.json",
            RecordOptions(chunk_size_chars=200, chunk_overlap_chars=200),
        )
    with pytest.raises(PipelineError, match="table_statements"):
        build_records(corpus, tmp_path / "r.parquet", tmp_path / "s.json", RecordOptions(table_statements=4))
    with pytest.raises(PipelineError, match="no training records"):
        build_records(
            corpus,
            tmp_path / "r.parquet",
            tmp_path / "s.json",
            RecordOptions(include_chunks=False, include_curated_qa=False, include_table_qa=False),
        )
    assert not (tmp_path / "r.parquet").exists()
