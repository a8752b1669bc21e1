"""The evaluate stage on the tiny test model: real mlx-lm, real Snakemake, measured figures."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))


def load(wf, name):
    return json.loads((wf / "results/eval" / f"{name}.json").read_text())


def test_each_model_is_evaluated_with_measured_figures(tiny_report):
    n_test = sum(1 for _ in open(tiny_report / "results/data/test.jsonl"))
    questions = sum(
        1 for line in open(tiny_report / "results/data/test.jsonl") if json.loads(line)["meta"]["kind"].startswith("qa")
    )
    for name in ("base", "lora", "qlora"):
        e = load(tiny_report, name)
        test = e["loss"]["test"]
        assert 0 < test["loss"] < 20 and test["perplexity"] == pytest.approx(2.718281828 ** test["loss"], rel=1e-4)
        assert (
            test["examples"] == min(10, n_test // 2) * 2 and test["batches"] == 10
        )  # tiny.yaml: 10 batches of 2, as --test-batches 10
        answers = e["answers"]
        assert answers["questions"] == questions > 0 and len(answers["per_question"]) == questions
        assert 0 <= answers["f1"] <= 1 and 0 <= answers["exact_match"] <= 1
        assert answers["f1"] == pytest.approx(sum(r["f1"] for r in answers["per_question"]) / questions, abs=1e-3)
        assert all(r["response"] is not None and r["reference"] for r in answers["per_question"])
        assert answers["generation"]["generated_tokens"] == sum(r["generated_tokens"] for r in answers["per_question"])
        assert answers["generation"]["batch_size"] == 16
        assert e["cost"]["model_bytes"] > 0
        assert "valid_minus_train_loss" in e["overfitting"]
        # the speed of this run: in its run record, one timing per question answered
        run = json.loads((tiny_report / f"results/runs/evaluate_{name}.json").read_text())
        generation = run["generation"]
        assert generation["tokens_per_second"] > 0 and generation["seconds"] > 0 and generation["batch_size"] == 16
        assert run["peak_memory_gb"] > 0 and run["seconds"] > 0 and set(run["loss_seconds"]) == set(e["loss"])
    qlora, lora, base = load(tiny_report, "qlora"), load(tiny_report, "lora"), load(tiny_report, "base")
    assert base["adapter"] is None and base["cost"]["adapter_bytes"] == 0 and base["cost"]["training_compute"] is None
    assert qlora["cost"]["model_bytes"] < lora["cost"]["model_bytes"]  # int4 base vs fp16 base
    summary = json.loads((tiny_report / "results/adapters/qlora/training_summary.json").read_text())
    assert qlora["cost"]["training_compute"] == summary["compute"]
    over = qlora["overfitting"]
    assert over["kept_step"] == summary["kept_step"] == summary["best_step"] and over["per_step"]
    assert all(r["gap"] == pytest.approx(r["val_loss"] - r["train_loss"], abs=1e-5) for r in over["per_step"])


def test_test_loss_agrees_with_mlx_lm_lora_test(tiny_report):
    """The same figure `mlx_lm lora --test` prints for the same model, adapter, data and settings."""
    e = load(tiny_report, "qlora")
    settings = e["settings"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "lora",
            "--model",
            "results/models/base-int4",
            "--adapter-path",
            "results/adapters/qlora",
            "--data",
            "results/data",
            "--test",
            "--batch-size",
            str(settings["batch_size"]),
            "--max-seq-length",
            str(settings["max_seq_length"]),
            "--mask-prompt",
            "--test-batches",
            str(settings["evaluation"]["loss_batches"]),
        ],
        cwd=tiny_report,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = re.search(r"Test loss (\d+\.\d+), Test ppl (\d+\.\d+)", proc.stdout + proc.stderr)
    assert found, proc.stdout[-2000:]
    # mlx-lm prints 3 decimals; it computes with the int4 kernels, the pipeline (on a CPU) with
    # the same weights dequantized to float32
    assert e["loss"]["test"]["loss"] == pytest.approx(float(found.group(1)), abs=2e-3)
    assert e["loss"]["test"]["perplexity"] == pytest.approx(float(found.group(2)), rel=3e-3)


def test_answers_are_scored_by_their_facts_per_support_label_with_intervals(tiny_report):
    from farense.facts import check

    labels = {
        json.loads(line)["meta"]["id"]: json.loads(line)["meta"]["support"]
        for line in open(tiny_report / "results/data/test.jsonl")
        if json.loads(line)["meta"]["kind"].startswith("qa")
    }
    for name in ("base", "base_full", "lora", "qlora"):
        answers = load(tiny_report, name)["answers"]
        rows = answers["per_question"]
        assert {r["id"]: r["support"] for r in rows} == labels
        for r in rows:  # the stored verdicts are the fact checker's
            assert r["facts"] == check([{"kind": f["kind"], "value": f["value"]} for f in r["facts"]], r["response"])
            assert r["fact_correct"] == (all(f["stated"] for f in r["facts"]) if r["facts"] else None)
        by = answers["by_support"]
        assert (
            by["seen_fact"]["questions"] >= 40
            and by["seen_fact"]["questions"] + by["unseen_fact"]["questions"] == answers["questions"] >= 60
        )
        for label, scores in by.items():
            mine = [r for r in rows if r["support"] == label]
            checked = [float(r["fact_correct"]) for r in mine if r["fact_correct"] is not None]
            assert scores["questions_with_facts"] == len(checked) > 0
            assert scores["fact_accuracy"] == pytest.approx(sum(checked) / len(checked), abs=1e-4)
            assert scores["f1"] == pytest.approx(sum(r["f1"] for r in mine) / len(mine), abs=1e-3)
            shares = [sum(f["stated"] for f in r["facts"]) / len(r["facts"]) for r in mine if r["facts"]]
            assert (
                scores["facts_right"] == pytest.approx(sum(shares) / len(shares), abs=1e-4)
                and scores["facts_right"] >= scores["fact_accuracy"]
            )
            for measure in ("fact_accuracy", "facts_right", "f1", "exact_match"):
                low, high = scores[f"{measure}_ci"]
                assert 0 <= low <= scores[measure] + 1e-9 and scores[measure] - 1e-9 <= high <= 1
        unseen = [r for r in rows if r["support"] == "unseen_fact"]
        assert by["unseen_fact"]["hallucination_rate"] == pytest.approx(
            sum(r["asserts_specific"] for r in unseen) / len(unseen), abs=1e-4
        )
        assert "hallucination_rate" not in by["seen_fact"]
    base_full = load(tiny_report, "base_full")
    assert base_full["adapter"] is None and base_full["base"] == "results/models/base"
    assert load(tiny_report, "base")["base"] == "results/models/base-int4"
    pairs = json.loads((tiny_report / "results/eval/comparison.json").read_text())["pairs"]
    assert set(pairs) == {"lora-qlora", "qlora-base", "lora-base_full", "base_full-base"}
    lq = pairs["lora-qlora"]["seen_fact"]["fact_correct"]
    assert lq["questions"] == load(tiny_report, "qlora")["answers"]["by_support"]["seen_fact"]["questions_with_facts"]
    assert lq["ci"][0] <= lq["difference"] <= lq["ci"][1]


def test_a_second_evaluation_gives_identical_figures(tiny_report, tmp_path):
    from conftest import copy_built, snakemake

    wf = copy_built(tiny_report, tmp_path / "wf")  # another folder: an absolute path in the file would show
    snakemake(wf, "results/eval/qlora.json", *TINY, "--forcerun", "evaluate")
    # the same bytes (timings are in the run record, which differs)
    assert (wf / "results/eval/qlora.json").read_bytes() == (tiny_report / "results/eval/qlora.json").read_bytes()
    first, again = load(tiny_report, "qlora")["answers"], load(wf, "qlora")["answers"]
    assert again["by_support"] == first["by_support"] and again["by_kind"] == first["by_kind"]
    assert [r["response"] for r in again["per_question"]] == [r["response"] for r in first["per_question"]]
    # the loss over 10 of the batches (tiny.yaml): the same seeded batches each time
    losses = lambda wf: {k: v["loss"] for k, v in load(wf, "qlora")["loss"].items()}  # noqa: E731
    assert losses(wf) == pytest.approx(losses(tiny_report), abs=1e-5)


def test_each_adapter_has_a_model_card(tiny_report):
    import hashlib

    import yaml

    for name in ("qlora", "lora"):
        text = (tiny_report / f"results/cards/{name}.md").read_text()
        _, front, body = text.split("---\n", 2)
        meta = yaml.safe_load(front)
        assert meta["library_name"] == "mlx" and meta["language"] == ["pt"] and meta["base_model"] == "tiny"
        assert {"fact_accuracy", "f1"} <= set(meta["metrics"])
        seen = load(tiny_report, name)["answers"]["by_support"]["seen_fact"]
        metric = next(m for m in meta["model-index"][0]["results"][0]["metrics"] if m["type"] == "fact_accuracy")
        assert metric["value"] == seen["fact_accuracy"]
        assert (
            f"| seen_fact | {seen['questions']} | {seen['fact_accuracy']:.3f} | [{seen['fact_accuracy_ci'][0]:.3f}, {seen['fact_accuracy_ci'][1]:.3f}]"
            in body
        )
        train = hashlib.sha256((tiny_report / "results/data/train.jsonl").read_bytes()).hexdigest()
        assert f"- `results/data/train.jsonl`: `{train}`" in body
        assert "LoRA minus QLoRA" in body
    entry = json.loads((tiny_report / "results/lineage/model_card_qlora.json").read_text())
    assert any(o["path"] == "results/cards/qlora.md" for o in entry["outputs"])
    from farense.provenance import describe

    int4 = describe(tiny_report / "results/models/base-int4")["sha256"]
    assert f"- `results/models/base-int4`: `{int4}`" in (tiny_report / "results/cards/qlora.md").read_text()


def test_answers_in_batches_are_the_answers_one_at_a_time(tiny_report):
    """evaluation.batch_size changes the speed, not the answers: the int4 base with the QLoRA
    adapter answers 12 test questions in batches of 5 (left-padded prompts of other lengths)
    as it does one question at a time."""
    import mlx_lm

    from farense.evaluation import generate_answers, test_questions

    model, tokenizer = mlx_lm.load(
        str(tiny_report / "results/models/base-int4"), adapter_path=str(tiny_report / "results/adapters/qlora")
    )
    prompts = [q["prompt"] for q in test_questions(tiny_report / "results/data/test.jsonl", "chat")[:12]]
    lengths = {len(tokenizer.apply_chat_template(p["messages"], add_generation_prompt=True)) for p in prompts}
    assert len(lengths) > 1  # the batches mix prompt lengths
    one, _ = generate_answers(model, tokenizer, prompts, 24, batch_size=1)
    batched, _ = generate_answers(model, tokenizer, prompts, 24, batch_size=5)
    assert [a["response"] for a in batched] == [a["response"] for a in one]
    assert [a["generated_tokens"] for a in batched] == [a["generated_tokens"] for a in one] and all(
        a["generated_tokens"] > 0 for a in one
    )
