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
    questions = sum(1 for line in open(tiny_report / "results/data/test.jsonl") if json.loads(line)["meta"]["kind"].startswith("qa"))
    for name in ("base", "lora", "qlora"):
        e = load(tiny_report, name)
        test = e["loss"]["test"]
        assert 0 < test["loss"] < 20 and test["perplexity"] == pytest.approx(2.718281828 ** test["loss"], rel=1e-4)
        assert test["examples"] == (n_test // 2) * 2  # batch 2, the last odd example left out as mlx-lm does
        answers = e["answers"]
        assert answers["questions"] == questions > 0 and len(answers["per_question"]) == questions
        assert 0 <= answers["f1"] <= 1 and 0 <= answers["exact_match"] <= 1
        assert answers["f1"] == pytest.approx(sum(r["f1"] for r in answers["per_question"]) / questions, abs=1e-3)
        assert all(r["response"] is not None and r["reference"] for r in answers["per_question"])
        generation = answers["generation"]
        assert generation["tokens_per_second"] > 0 and 0 < generation["time_to_first_token_median"] < 10
        assert e["cost"]["model_bytes"] > 0 and e["cost"]["evaluation_peak_memory_gb"] > 0
        assert "valid_minus_train_loss" in e["overfitting"]
    qlora, lora, base = load(tiny_report, "qlora"), load(tiny_report, "lora"), load(tiny_report, "base")
    assert base["adapter"] is None and base["cost"]["adapter_bytes"] == 0 and base["cost"]["training_seconds"] is None
    assert qlora["cost"]["model_bytes"] < lora["cost"]["model_bytes"]  # int4 base vs fp16 base
    summary = json.loads((tiny_report / "results/adapters/qlora/training_summary.json").read_text())
    assert qlora["cost"]["training_tokens_per_second"] == summary["tokens_per_second"]
    over = qlora["overfitting"]
    assert over["best_step"] == summary["best_step"] and over["per_step"]
    assert all(r["gap"] == pytest.approx(r["val_loss"] - r["train_loss"], abs=1e-5) for r in over["per_step"])


def test_test_loss_agrees_with_mlx_lm_lora_test(tiny_report):
    """The same figure `mlx_lm lora --test` prints for the same model, adapter, data and settings."""
    e = load(tiny_report, "qlora")
    settings = e["settings"]
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "lora", "--model", "results/models/base-int4", "--adapter-path", "results/adapters/qlora",
         "--data", "results/data", "--test", "--batch-size", str(settings["batch_size"]), "--max-seq-length", str(settings["max_seq_length"]),
         "--mask-prompt"],
        cwd=tiny_report, check=True, capture_output=True, text=True, timeout=600,
    )
    found = re.search(r"Test loss (\d+\.\d+), Test ppl (\d+\.\d+)", proc.stdout + proc.stderr)
    assert found, proc.stdout[-2000:]
    # mlx-lm prints 3 decimals; it computes with the int4 kernels, the pipeline (on a CPU) with
    # the same weights dequantized to float32
    assert e["loss"]["test"]["loss"] == pytest.approx(float(found.group(1)), abs=2e-3)
    assert e["loss"]["test"]["perplexity"] == pytest.approx(float(found.group(2)), rel=3e-3)
