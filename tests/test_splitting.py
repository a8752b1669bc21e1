"""Splits: seeded, grouped, leakage-free, validated line by line, written whole or not at all."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from farense.dedup import MinHasher, exact_key, similar_pairs
from farense.errors import PipelineError
from farense.records import RECORD_SCHEMA
from farense.facts import states
from farense.split_groups import fact_roles, leakage_check
from farense.split_options import SPLITS, SplitOptions
from farense.splitting import split_jsonl
from farense.support import SEEN, UNSEEN

SCHEMAS = ROOT / "config" / "schemas"


def run_split(records, out, options=SplitOptions()):
    stats = split_jsonl(
        records, out, out / "split_stats.json", SCHEMAS / f"jsonl_{options.format}.schema.yaml", options
    )
    lines = {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text().splitlines()] for s in SPLITS}
    return stats, lines


@pytest.fixture(scope="module")
def records(built_data):
    return built_data / "results/data/records.parquet"


def test_same_seed_same_bytes_other_seed_other_split(records, tmp_path):
    run_split(records, tmp_path / "a")
    run_split(records, tmp_path / "b")
    run_split(records, tmp_path / "c", SplitOptions(seed=7))
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


def test_groups_stay_together_and_every_kind_is_in_every_split(records, tmp_path):
    stats, lines = run_split(records, tmp_path)
    frame = pd.read_parquet(records).set_index("record_id")
    split_of = {obj["meta"]["id"]: split for split, objs in lines.items() for obj in objs}
    frame = frame.loc[list(split_of)]
    frame["split"] = [split_of[i] for i in frame.index]
    assert frame.groupby("group_key")["split"].nunique().max() == 1
    chunks = frame[frame["kind"] == "chunk"]
    assert chunks.groupby("doc_id")["split"].nunique().max() == 1
    questions = frame[frame["question_key"] != ""]
    assert questions.groupby("question_key")["split"].nunique().max() == 1
    assert set(stats["splits"]["train"]["by_kind"]) == {"chunk", "qa_curated", "qa_table", "table_text"}
    for split in SPLITS:
        assert {"chunk", "qa_curated", "qa_table"} <= set(stats["splits"][split]["by_kind"])
    assert stats["leakage_check"]["passed"]
    shares = {s: stats["splits"][s]["share"] for s in SPLITS}
    # probed and held-out facts make the test split larger than test_fraction
    assert shares["train"] > 0.5 and 0.04 < shares["valid"] < 0.2 and 0.2 < shares["test"] < 0.45
    plain, _ = run_split(records, tmp_path / "plain", SplitOptions(probe_fraction=0, unseen_fraction=0))
    shares = {s: plain["splits"][s]["share"] for s in SPLITS}
    assert shares["train"] > 0.7 and 0.04 < shares["valid"] < 0.2 and 0.04 < shares["test"] < 0.2
    assert plain["test_questions"]["questions"] < stats["test_questions"]["questions"] / 2
    # lines are shuffled, not in record order
    position = {rid: i for i, rid in enumerate(pd.read_parquet(records)["record_id"])}
    order = [position[obj["meta"]["id"]] for obj in lines["train"]]
    assert order != sorted(order)


def _text(obj):
    return " ".join(m["content"] for m in obj["messages"])


def test_test_questions_are_labelled_by_what_training_states(records, tmp_path):
    stats, lines = run_split(records, tmp_path)
    counts = stats["test_questions"]
    # the floor on the shipped corpus: 60 test questions, 40 of them seen facts, of both kinds
    assert counts["questions"] >= 60 and counts["by_support"][SEEN] >= 40 and counts["by_support"][UNSEEN] >= 10
    assert (
        counts["by_kind_and_support"]["qa_curated/seen_fact"] >= 10
        and counts["by_kind_and_support"]["qa_table/seen_fact"] >= 10
    )
    questions = [obj for obj in lines["test"] if obj["meta"]["kind"] in ("qa_curated", "qa_table")]
    assert len(questions) == counts["questions"] and all(obj["meta"]["support"] in (SEEN, UNSEEN) for obj in questions)
    assert not any("support" in obj["meta"] for split in ("train", "valid") for obj in lines[split])
    assert not any("support" in obj["meta"] for obj in lines["test"] if obj["meta"]["kind"] in ("chunk", "table_text"))
    # checked again here, independently of the index the stage searches through
    frame = pd.read_parquet(records).set_index("record_id")
    # what training teaches: to write the assistant's message (an answer; of prose, all but the given first sentence) after the rest
    train_texts = [(_text(obj), obj["messages"][-1]["content"]) for obj in lines["train"]]
    train_questions = {frame.loc[obj["meta"]["id"], "question_key"] for obj in lines["train"]} - {""}
    for obj in questions:
        record = frame.loc[obj["meta"]["id"]]
        facts = json.loads(record["facts"])
        needed = facts["answer"] + facts["subject"]
        written_facts = [f for f in facts["answer"] if f not in facts["subject"]]
        stated = bool(needed) and any(
            all(states(f, whole) for f in facts["subject"]) and all(states(f, written) for f in written_facts)
            for whole, written in train_texts
        )  # nothing to check: unseen
        assert stated == (obj["meta"]["support"] == SEEN), (record["question"], obj["meta"]["support"])
        assert record["question_key"] not in train_questions  # the pair itself never trains
        assert obj["meta"]["facts"] == facts["answer"]
    # a seen match result: trained as prose, tested as a question
    seen_table = [obj for obj in questions if obj["meta"]["kind"] == "qa_table" and obj["meta"]["support"] == SEEN]
    record = frame.loc[seen_table[0]["meta"]["id"]]
    wordings = frame[(frame["fact_key"] == record["fact_key"]) & (frame["kind"] == "table_text")].index
    assert set(wordings) <= {obj["meta"]["id"] for obj in lines["train"]}


def test_fact_roles_bind_probes_to_test_and_their_facts_to_training():
    fact_keys = np.array([0, 0, 0, 1, 1, 2, 2, 3, -1, -1])
    probes = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0, 0], dtype=bool)  # fact 3 has no probe
    everything = fact_roles(fact_keys, probes, SplitOptions(probe_fraction=1.0, unseen_fraction=0.0))
    assert everything.tolist() == [2, 0, 0, 2, 0, 2, 0, -1, -1, -1]
    held_out = fact_roles(fact_keys, probes, SplitOptions(probe_fraction=0.0, unseen_fraction=1.0))
    assert held_out.tolist() == [2, 2, 2, 2, 2, 2, 2, -1, -1, -1]
    nothing = fact_roles(fact_keys, probes, SplitOptions(probe_fraction=0.0, unseen_fraction=0.0))
    assert (nothing == -1).all()
    third = fact_roles(fact_keys, probes, SplitOptions(seed=3, probe_fraction=1 / 3, unseen_fraction=1 / 3))
    assert sorted(third[[0, 3, 5]].tolist()) == [-1, 2, 2]  # one fact probed, one held out, one free
    assert (
        fact_roles(fact_keys, probes, SplitOptions(seed=3, probe_fraction=1 / 3, unseen_fraction=1 / 3)).tolist()
        == third.tolist()
    )


def test_valid_probes_go_to_validation_and_their_facts_to_training():
    fact_keys = np.array([0, 0, 0, 1, 1, 2, 2, 3, -1, -1])
    probes = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    all_valid = fact_roles(
        fact_keys, probes, SplitOptions(probe_fraction=1.0, unseen_fraction=0.0, valid_probe_fraction=1.0)
    )
    assert all_valid.tolist() == [1, 0, 0, 1, 0, 1, 0, -1, -1, -1]
    third = fact_roles(
        fact_keys, probes, SplitOptions(seed=3, probe_fraction=1.0, unseen_fraction=0.0, valid_probe_fraction=1 / 3)
    )
    assert sorted(third[[0, 3, 5]].tolist()) == [1, 2, 2]  # one probe validates, two are tested
    assert (third[[1, 2, 4, 6]] == 0).all()  # every probed fact's other records train


def test_valid_probes_on_the_shipped_corpus(records, tmp_path):
    tested, lines = run_split(records, tmp_path / "tested")
    validated, vlines = run_split(records, tmp_path / "validated", SplitOptions(valid_probe_fraction=0.5))
    assert tested["valid_probes"] == 0 and validated["valid_probes"] > 10
    assert validated["leakage_check"]["passed"]
    frame = pd.read_parquet(records).set_index("record_id")
    split_of = {obj["meta"]["id"]: s for s, objs in vlines.items() for obj in objs}
    was = {obj["meta"]["id"]: s for s, objs in lines.items() for obj in objs}
    # the same seed picks the same probed facts: half of their probes moved from test to validation
    valid_probes = [rid for rid, s in split_of.items() if s == "valid" and was[rid] == "test"]
    assert all(frame.loc[valid_probes, "probe"]) and len(valid_probes) == validated["valid_probes"]
    assert all(split_of[rid] == was[rid] for rid in split_of if rid not in valid_probes)  # nothing else moved
    for rid in valid_probes:  # the fact's other records train: the validation question asks what training states
        siblings = [
            r for r in frame.index[frame["fact_key"] == frame.loc[rid, "fact_key"]] if r != rid and r in split_of
        ]
        assert siblings and all(split_of[r] == "train" for r in siblings), frame.loc[rid, "question"]
    # the probes that validate are no longer tested: fewer seen_fact questions, as many unseen
    seen, unseen = (validated["test_questions"]["by_support"][label] for label in (SEEN, UNSEEN))
    assert (
        seen < tested["test_questions"]["by_support"][SEEN] and unseen == tested["test_questions"]["by_support"][UNSEEN]
    )


def test_no_exact_or_near_duplicate_text_crosses_splits(records, tmp_path):
    _, lines = run_split(records, tmp_path)
    frame = pd.read_parquet(records).set_index("record_id")
    texts = {s: frame.loc[[obj["meta"]["id"] for obj in objs], "text"].tolist() for s, objs in lines.items()}
    keys = {s: {exact_key(t) for t in ts} for s, ts in texts.items()}
    assert (
        not (keys["train"] & keys["valid"])
        and not (keys["train"] & keys["test"])
        and not (keys["valid"] & keys["test"])
    )
    hasher = MinHasher()
    sig = {s: hasher.signatures(ts) for s, ts in texts.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        sims = (sig[a][:, None, :] == sig[b][None, :, :]).mean(axis=2)
        assert sims.max() < 0.7
    # as the model sees them: no test question is a near duplicate of a training line. (Two
    # results written in the same wording, say "Ficha do encontro entre ...", can be as similar
    # as that once the continuation prompt is added: other matches, other facts.)
    questions = [_text(obj) for obj in lines["test"] if obj["meta"]["kind"] in ("qa_curated", "qa_table")]
    sims = (
        hasher.signatures(questions)[:, None, :]
        == hasher.signatures([_text(obj) for obj in lines["train"]])[None, :, :]
    ).mean(axis=2)
    assert sims.max() < 0.7


def test_leakage_check_finds_what_crosses():
    texts = [
        "O Farense venceu o Olhanense por 3-1 em casa na época de 1994/95, diante de muitos adeptos.",
        "Um texto completamente diferente sobre o estádio.",
    ]
    texts.append(texts[0].replace("3-1", "3-2"))  # a near duplicate of the first
    texts.append(texts[1])  # an exact duplicate of the second
    hasher = MinHasher()
    pairs, _ = similar_pairs(hasher.signatures(texts), 0.5)
    assert pairs.tolist() == [[0, 2], [1, 3]]
    keys = [exact_key(t) for t in texts]
    ok = leakage_check(["train", "test", "train", "test"], ["g1", "g2", "g3", "g4"], keys, pairs, 0.5)
    assert ok["passed"] and ok["near_duplicate_pairs_checked"] == 2
    leak = leakage_check(["train", "test", "test", "train"], ["g1", "g2", "g1", "g4"], keys, pairs, 0.5)
    assert not leak["passed"]
    assert (
        leak["groups_across_splits"],
        leak["exact_duplicates_across_splits"],
        leak["near_duplicate_pairs_across_splits"],
    ) == (1, 1, 2)
    # one question asked in two splits, in other records (another answer, another group)
    asked = leakage_check(
        ["train", "test", "train", "test"],
        ["g1", "g2", "g3", "g4"],
        keys,
        np.empty((0, 2), dtype=np.int64),
        0.5,
        ["onde joga", "", "", "onde joga"],
    )
    assert not asked["passed"] and asked["questions_across_splits"] == 1


@pytest.mark.parametrize("fmt", ["text", "completions", "chat"])
def test_each_format_is_written_and_valid(records, tmp_path, fmt):
    _, lines = run_split(
        records, tmp_path, SplitOptions(format=fmt, system_prompt="És um assistente." if fmt == "chat" else "")
    )
    first = lines["train"][0]
    expected = {
        "text": {"text", "meta"},
        "completions": {"prompt", "completion", "meta"},
        "chat": {"messages", "meta"},
    }[fmt]
    assert all(set(obj) == expected for objs in lines.values() for obj in objs)
    if fmt == "chat":
        assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    qa = next(obj for obj in lines["test"] if obj["meta"]["kind"] == "qa_table")
    if fmt == "completions":
        assert qa["prompt"].startswith("Qual foi") or qa["prompt"].startswith("O jogo")


def test_conflicts_are_kept_out_unless_asked(records, tmp_path):
    stats, lines = run_split(records, tmp_path / "out")
    ids = {obj["meta"]["id"] for objs in lines.values() for obj in objs}
    conflicting = set(pd.read_parquet(records).query("conflict")["record_id"])
    assert conflicting and not (ids & conflicting) and stats["excluded_conflicting_records"] == len(conflicting)
    stats, lines = run_split(records, tmp_path / "keep", SplitOptions(keep_conflicts=True))
    ids = {obj["meta"]["id"] for objs in lines.values() for obj in objs}
    assert conflicting <= ids and stats["excluded_conflicting_records"] == 0


def _records_file(path, rows):
    base = {
        "doc_id": "d",
        "source_path": "x.json",
        "origin": "x.json#item0",
        "kind": "qa_curated",
        "question_key": "",
        "conflict": False,
    }
    table = [
        dict(
            base,
            record_id=f"qa_curated-{i:016x}",
            group_key=f"q:{i}",
            question=q,
            answer=a,
            text=f"{q}\n{a}",
            question_key=f"q{i}",
        )
        for i, (q, a) in enumerate(rows)
    ]
    pq.write_table(pa.Table.from_pylist(table, schema=RECORD_SCHEMA), path)
    return path


def test_schema_violation_names_file_record_and_field_and_writes_nothing(tmp_path):
    rows = [
        (f"Pergunta número {i} sobre o clube de Faro?", f"Resposta número {i} com factos diferentes {i * 7}.")
        for i in range(30)
    ]
    rows[5] = ("Pergunta sem resposta?", " ")  # a blank answer: the schema wants a non-blank string
    records = _records_file(tmp_path / "records.parquet", rows)
    out = tmp_path / "out"
    message = r"out/(train|valid|test)\.jsonl: record qa_curated-0000000000000005 \(x\.json#item0\): field 'messages/1/content': ' ' does not match"
    with pytest.raises(PipelineError, match=message):
        run_split(records, out)
    assert sorted(p.name for p in out.iterdir()) == [] if out.exists() else True


def test_too_few_groups_for_the_fractions_is_a_clear_error(tmp_path):
    records = _records_file(tmp_path / "records.parquet", [("Onde joga o Farense?", "No São Luís.")])
    with pytest.raises(PipelineError, match="came out empty.*valid_fraction"):
        run_split(records, tmp_path / "out")
    stats, lines = run_split(records, tmp_path / "only-train", SplitOptions(valid_fraction=0.0, test_fraction=0.0))
    assert stats["splits"]["train"]["records"] == 1 and lines["valid"] == lines["test"] == []


def test_assignment_is_stratified_per_kind(records, tmp_path):
    stats, _ = run_split(records, tmp_path, SplitOptions(valid_fraction=0.2, test_fraction=0.2))
    for kind in ("chunk", "qa_curated", "qa_table"):
        counts = np.array([stats["splits"][s]["by_kind"].get(kind, 0) for s in SPLITS])
        assert counts[1] > 0 and counts[2] > 0 and counts[0] > counts[1]
