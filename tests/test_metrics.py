"""Exact match, token F1 (SQuAD's, adapted to Portuguese) and perplexity on known cases."""

import json
import math

import pytest

from farense.errors import PipelineError

from farense.evaluation import test_questions as read_test_questions
from farense.metrics import exact_match, normalize_answer, perplexity, token_f1


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("O Estádio de São Luís.", "estádio de são luís"),  # case, punctuation, the article
        ("Estádio São Luís", "Estádio  São   Luís"),  # spacing
        ("Esta\u0301dio", "Estádio"),  # a decomposed accent equals the composed one (NFC)
        ("Um golo de Hassan Nader!", "golo de Hassan Nader"),  # indefinite article
        ("4-1", "4-1"),
        ("1.ª Divisão", "1.a divisão"),  # ordinal indicator
    ],
)
def test_exact_match_after_normalisation(prediction, reference):
    assert exact_match(prediction, reference) == 1.0


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("Estadio de Sao Luis", "Estádio de São Luís"),  # accents are kept: a different word
        ("4-1", "41"),  # a score is one token, not two numbers glued
        ("1970/71", "1970 71"),
        ("e", "é"),  # "and" is not "is"
    ],
)
def test_exact_match_keeps_what_changes_meaning(prediction, reference):
    assert exact_match(prediction, reference) == 0.0


def test_normalisation_keeps_scores_and_seasons_as_one_token():
    assert normalize_answer("O Farense venceu por 4-1, na época 1994/95.") == "farense venceu por 4-1 na época 1994/95"


def test_token_f1_known_values():
    # prediction "farense venceu chaves" vs reference "farense venceu por 4-1": 2 common tokens,
    # precision 2/3, recall 2/4 -> F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7
    assert token_f1("O Farense venceu o Chaves", "O Farense venceu por 4-1") == pytest.approx(4 / 7)
    assert token_f1("Faro", "Faro") == 1.0
    assert token_f1("Lisboa", "Faro") == 0.0
    assert token_f1("", "Faro") == 0.0
    assert token_f1("o", "a") == 1.0  # both only articles: both empty after normalisation
    # repeated tokens count once per occurrence (SQuAD's multiset intersection)
    assert token_f1("golo golo golo", "golo") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_perplexity_is_exp_of_the_mean_token_loss():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(283.1)) == pytest.approx(283.1)


def test_test_questions_are_read_from_each_format(tmp_path):
    meta = {
        "id": "q1",
        "kind": "qa_curated",
        "doc_id": "d",
        "origin": "x.json",
        "support": "seen_fact",
        "facts": [{"kind": "name", "value": "São Luís"}],
    }
    chunk = {"id": "c1", "kind": "chunk", "doc_id": "d", "origin": "x.txt"}
    lines = {
        "chat": [
            {
                "messages": [
                    {"role": "system", "content": "Sê breve."},
                    {"role": "user", "content": "Onde joga o Farense?"},
                    {"role": "assistant", "content": "No São Luís."},
                ],
                "meta": meta,
            },
            {
                "messages": [{"role": "user", "content": "Continua"}, {"role": "assistant", "content": "texto"}],
                "meta": chunk,
            },
        ],
        "completions": [{"prompt": "Onde joga o Farense?", "completion": "No São Luís.", "meta": meta}],
        "text": [
            {"text": "Pergunta: Onde joga o Farense?\nResposta: No São Luís.", "meta": meta},
            {"text": "Um texto corrido.", "meta": chunk},
        ],
    }
    for fmt, objs in lines.items():
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
        questions = read_test_questions(path, fmt)
        assert [(q["question"], q["reference"], q["kind"], q["support"], q["facts"]) for q in questions] == [
            ("Onde joga o Farense?", "No São Luís.", "qa_curated", "seen_fact", meta["facts"])
        ], fmt
    chat = read_test_questions(tmp_path / "chat.jsonl", "chat")[0]["prompt"]["messages"]
    assert [m["role"] for m in chat] == ["system", "user"]  # the system prompt is asked too, the answer is not
    # a test split made before support labels existed is refused with what to do
    unlabelled = tmp_path / "old.jsonl"
    unlabelled.write_text(
        json.dumps({"prompt": "Onde?", "completion": "Aqui.", "meta": dict(meta, support=None)}) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(
        PipelineError, match=r"old\.jsonl, line 1: test question without a support label .*rebuild the splits"
    ):
        read_test_questions(unlabelled, "completions")
