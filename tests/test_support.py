"""Support labels: a test question is seen_fact when one training record states its facts."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import snakemake
from farense import facts as factlib
from farense.support import SEEN, UNSEEN, key_tokens, label


def _records(path, texts, row_group_size=2, questions=None, answers=None):
    table = pa.table(
        {"text": texts, "question": questions or [""] * len(texts), "answer": answers or [""] * len(texts)}
    )
    pq.write_table(table, path, row_group_size=row_group_size)  # several row groups: the index is built per group
    return path


def _question(question, answer):
    return factlib.dumps(factlib.question_facts(question, answer))


def test_a_fact_stated_by_one_training_record_is_seen(tmp_path):
    texts = [
        "O Estádio de São Luís abriu as portas a 1 de dezembro de 1923, num jogo contra o Sport Lisboa e Faro.",  # train
        "Paco Fortes treinou o Farense durante cerca de 13 épocas.",  # train
        "Hassan Nader chegou a Faro em 1992/93.",  # train: the player, not his goals
        "Em 1994/95 o Farense teve um avançado goleador.",  # train: the season, not the player
        "Hassan Nader marcou 21 golos no campeonato de 1994/95.",  # test only
    ]
    records = _records(tmp_path / "records.parquet", texts)
    train = np.array([True, True, True, True, False])
    questions = [
        _question(
            "Quando foi inaugurado o Estádio de São Luís?", "A 1 de dezembro de 1923."
        ),  # stated in train, other words
        _question("Quem foi o treinador do Farense durante 13 épocas?", "Foi Paco Fortes."),
        _question("Quantos golos marcou Hassan Nader em 1994/95?", "Marcou 21 golos."),  # only the test row says it
        _question(
            "Quando foi inaugurado o Estádio de São Luís?", "A 2 de dezembro de 1923."
        ),  # a date training never states
    ]
    whole = dict(prose_given=False)  # the text format: all of a prose record is taught
    assert label(records, train, questions, **whole) == [SEEN, SEEN, UNSEEN, UNSEEN]
    assert label(records, np.ones(5, dtype=bool), questions, **whole) == [SEEN, SEEN, SEEN, UNSEEN]
    assert label(records, train, questions, workers=2, **whole) == [SEEN, SEEN, UNSEEN, UNSEEN]  # the same with workers
    # facts split over two records are not one record stating them
    split = _records(tmp_path / "split.parquet", ["Hassan Nader jogou em 1994/95.", "Alguém marcou 21 golos."])
    assert label(split, np.ones(2, dtype=bool), [questions[2]], **whole) == [UNSEEN]


def test_a_fact_only_in_the_given_first_sentence_of_prose_is_not_taught(tmp_path):
    question = _question("Quando foi inaugurado o Estádio de São Luís?", "A 1 de dezembro de 1923.")
    given = "O Estádio de São Luís abriu a 1 de dezembro de 1923. Depois veio a bancada nova, anos mais tarde."
    taught = "Falemos do recinto da cidade. O Estádio de São Luís abriu a 1 de dezembro de 1923."
    for text, expected in ((given, UNSEEN), (taught, SEEN)):
        records = _records(tmp_path / "r.parquet", [text])
        assert label(records, np.ones(1, dtype=bool), [question]) == [expected]  # the dialogue formats
        assert label(records, np.ones(1, dtype=bool), [question], prose_given=False) == [SEEN]  # the text format
    # a question record teaches its question with its answer
    q, a = "Quando abriu o Estádio de São Luís?", "A 1 de dezembro de 1923."
    asked = _records(tmp_path / "q.parquet", [f"{q}\n{a}"], questions=[q], answers=[a])
    assert label(asked, np.ones(1, dtype=bool), [question]) == [SEEN]
    # ... but not a fact that only its question holds
    other = _records(
        tmp_path / "o.parquet",
        ["Abriu a 1 de dezembro de 1923 o Estádio de São Luís?\nSim."],
        questions=["Abriu a 1 de dezembro de 1923 o Estádio de São Luís?"],
        answers=["Sim."],
    )
    assert label(other, np.ones(1, dtype=bool), [question]) == [UNSEEN]


def test_match_questions_need_the_opponent_and_the_date_with_the_result(tmp_path):
    question = factlib.dumps(
        {
            "answer": [factlib.fact("outcome", "win"), factlib.fact("score", "2-0"), factlib.fact("venue", "home")],
            "subject": [factlib.fact("name", "Académica"), factlib.fact("date", "2019-08-18")],
        }
    )
    assert key_tokens(json.loads(question)["answer"] + json.loads(question)["subject"]) == {"academica", "2019"}
    right = "A 18 de agosto de 2019 o Farense recebeu a Académica e venceu por 2-0."
    other_day = "A 25 de agosto de 2019 o Farense recebeu a Académica e venceu por 2-0."
    other_result = "A 18 de agosto de 2019 o Farense recebeu a Académica e empatou 0-0."
    for texts, expected in (([right], SEEN), ([other_day, other_result], UNSEEN)):
        records = _records(tmp_path / f"{expected}.parquet", texts)
        assert label(records, np.ones(len(texts), dtype=bool), [question], prose_given=False) == [expected]


def test_a_hyphenated_name_is_found_by_its_words(tmp_path):
    # the index splits "Beira-Mar" into "beira" and "mar"; a key word "beira-mar" was never in it, so
    # every match against Beira-Mar was labelled unseen_fact although training stated its result
    question = _question(
        "Qual foi o resultado do Farense contra o Beira-Mar em 5 de fevereiro de 1995?",
        "O Farense perdeu com o Beira-Mar por 0-1, fora, a 5 de fevereiro de 1995 (Primeira Divisão, época 1994/95).",
    )
    assert key_tokens(json.loads(question)["answer"] + json.loads(question)["subject"]) >= {"beira", "mar"}
    stated = (
        "A 5 de fevereiro de 1995 o Farense defrontou o Beira-Mar. Fora, numa partida da Primeira Divisão "
        "(época 1994/95), o encontro terminou com derrota do Farense por 0-1."
    )
    records = _records(tmp_path / "records.parquet", [stated])
    assert label(records, np.ones(1, dtype=bool), [question]) == [SEEN]


def build_test_labels(workflow, raw) -> dict[str, str]:
    """The support label of each test question of the club "Ria"'s corpus in `raw`, split with every
    fact probed and nothing else in validation or test (so what is not probed trains)."""
    split = '{"probe_fraction": 1.0, "unseen_fraction": 0.0, "valid_fraction": 0.0, "test_fraction": 0.0}'
    snakemake(
        workflow,
        "results/data/test.jsonl",
        "--config",
        f"raw_dir={raw}",
        f"split={split}",
        'records={"club_name": "Ria"}',
    )
    lines = (workflow / "results/data/test.jsonl").read_text(encoding="utf-8").splitlines()
    return {obj["messages"][-2]["content"]: obj["meta"]["support"] for obj in map(json.loads, lines)}


def test_labels_on_a_hand_made_corpus_through_the_real_pipeline(workflow, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "historia.txt").write_text(
        "Esta é a história de um pequeno clube da ria.\n\n"  # the first sentence is given, not taught: no fact in it
        "O Clube Desportivo da Ria foi fundado a 3 de março de 1931 por pescadores de Olhão.\n\n"
        "O primeiro presidente do clube foi Armando Viegas, que o dirigiu durante 12 anos.\n\n"
        "O campo do clube, o Estádio da Marinha, leva cerca de 4 000 espectadores.\n",
        encoding="utf-8",
    )
    pairs = [
        {"pergunta": "Em que data nasceu o Clube Desportivo da Ria?", "resposta": "Nasceu a 3 de março de 1931."},
        {"pergunta": "Quem foi o primeiro presidente do clube?", "resposta": "Foi Armando Viegas."},
        {
            "pergunta": "Quantos espectadores leva o Estádio da Marinha?",
            "resposta": "Leva cerca de 4 000 espectadores.",
        },
        {"pergunta": "Quem treinou o clube em 1950?", "resposta": "Foi Joaquim Ramalho."},  # stated nowhere else
        {
            "pergunta": "Que cor tem o equipamento alternativo?",
            "resposta": "É verde, desde 1977.",
        },  # stated nowhere else
    ]
    (raw / "perguntas.json").write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    support = build_test_labels(workflow, raw)
    assert support == {
        pairs[0]["pergunta"]: SEEN,
        pairs[1]["pergunta"]: SEEN,
        pairs[2]["pergunta"]: SEEN,
        pairs[3]["pergunta"]: UNSEEN,
        pairs[4]["pergunta"]: UNSEEN,
    }
    train = (workflow / "results/data/train.jsonl").read_text(encoding="utf-8")
    assert "Armando Viegas" in train and "Joaquim Ramalho" not in train
    stats = json.loads((workflow / "results/data/split_stats.json").read_text())
    assert stats["test_questions"]["by_support"] == {SEEN: 3, UNSEEN: 2} and stats["leakage_check"]["passed"]


def test_questions_with_nothing_to_look_up_by_are_checked_against_every_record(tmp_path):
    only_numbers = factlib.dumps({"answer": [factlib.fact("number", "7000")], "subject": []})
    nothing = factlib.dumps({"answer": [], "subject": []})
    assert key_tokens([factlib.fact("number", "7000")]) == frozenset()  # "7 000", "sete mil": no one word to index
    records = _records(
        tmp_path / "r.parquet", ["Um texto qualquer.", "Cabem lá cerca de sete mil pessoas.", "Outro texto."]
    )
    assert label(records, np.array([True, True, True]), [only_numbers, nothing], prose_given=False) == [SEEN, UNSEEN]
    assert label(records, np.array([True, False, True]), [only_numbers, nothing], workers=2, prose_given=False) == [
        UNSEEN,
        UNSEEN,
    ]


def test_a_curated_question_reworded_in_training_is_seen_and_its_rewording_trains(workflow, tmp_path):
    """A pair naming the question it rewords ("reformula") is that question's fact: the question
    is the probe held out for the test, the rewording trains, and nothing else states the fact."""
    raw = tmp_path / "raw"
    raw.mkdir()
    pairs = [
        {"pergunta": "Em que ano foi fundado o Clube da Ria?", "resposta": "O Clube da Ria foi fundado em 1931."},
        {"pergunta": "Quem treinou o Clube da Ria em 1950?", "resposta": "Foi Joaquim Ramalho."},
    ]
    rewordings = [
        {
            "pergunta": "Desde que ano existe o clube dos pescadores da Ria?",
            "resposta": "Existe desde 1931, ano da sua fundação.",
            "reformula": pairs[0]["pergunta"],
        },
        {  # names a question that no file asks: a fact of its own, with a warning
            "pergunta": "Quantos sócios tinha o Clube da Ria em 1960?",
            "resposta": "Tinha 412 sócios.",
            "reformula": "Quantos sócios tinha o clube?",
        },
    ]
    (raw / "perguntas.json").write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    (raw / "reformuladas.json").write_text(json.dumps(rewordings, ensure_ascii=False), encoding="utf-8")
    support = build_test_labels(workflow, raw)
    data = workflow / "results/data"
    # the second original has no rewording and no prose: unseen; the rewordings are never probes
    assert support == {pairs[0]["pergunta"]: SEEN, pairs[1]["pergunta"]: UNSEEN}
    train = (data / "train.jsonl").read_text(encoding="utf-8")
    assert rewordings[0]["pergunta"] in train and rewordings[1]["pergunta"] in train
    assert pairs[0]["pergunta"] not in train
    warnings = json.loads((data / "records_stats.json").read_text())["warnings"]
    assert [
        w["path"].endswith("reformuladas.json") and "item 1 rewords a question no curated file asks" in w["message"]
        for w in warnings
    ] == [True]
