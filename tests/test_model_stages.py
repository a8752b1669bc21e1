"""The base model and its int4 conversion, built by the real Snakemake and read by the real mlx-lm."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, snakemake

TINY = str(ROOT / "tests/config/tiny.yaml")


@pytest.fixture(scope="module")
def converted(built_data):
    snakemake(built_data, "results/models/conversion.json", "--configfile", "config/config.yaml", TINY)
    return built_data


def test_tiny_base_has_the_layout_of_a_real_model(converted):
    base = converted / "results/models/base"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (base / name).exists(), name
    config = json.loads((base / "config.json").read_text())
    assert config["model_type"] == "mistral" and config["hidden_size"] == 64 and config["num_key_value_heads"] == 1
    assert "[INST]" in (base / "chat_template.jinja").read_text()
    summary = json.loads((base / "farense_base.json").read_text())
    assert summary["pretrain_curve"][-1]["step"] == 6 and summary["parameters"] > 50_000


def test_int4_model_loads_and_generates_with_mlx_lm(converted):
    code = (
        "import mlx_lm, json\n"
        "model, tok = mlx_lm.load('results/models/base-int4')\n"
        "prompt = tok.apply_chat_template([{'role': 'user', 'content': 'Onde joga o Farense?'}], add_generation_prompt=True)\n"
        "text = mlx_lm.generate(model, tok, prompt=prompt, max_tokens=8)\n"
        "print(json.dumps({'quantization': model.args.__dict__.get('quantization'), 'text': text}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=converted, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(result["text"], str)
    summary = json.loads((converted / "results/models/conversion.json").read_text())
    assert summary["int4"]["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}
    assert 4.0 < summary["int4"]["bits_per_weight"] < 5.0 and summary["base"]["bits_per_weight"] == 16.0
    assert summary["compression"] > 2.5 and summary["int4"]["parameters"] == summary["base"]["parameters"]


def test_quantization_change_reconverts_without_rebuilding_the_base(converted):
    jobs = snakemake(
        converted,
        "-n",
        "results/models/conversion.json",
        "--configfile",
        "config/config.yaml",
        TINY,
        "--config",
        'quantization={"group_size": 32}',
    ).stdout
    assert "convert_int4" in jobs and "build_base_model" not in jobs and "clean_text" not in jobs


def test_tiny_dimensions_must_fit_the_group_size(workflow):
    proc = snakemake(
        workflow,
        "results/models/conversion.json",
        "--configfile",
        "config/config.yaml",
        TINY,
        "--config",
        'model={"tiny": {"hidden_size": 96}}',
        check=False,
    )
    assert (
        proc.returncode != 0
        and "model.tiny.hidden_size (96) must be a multiple of quantization.group_size (64)" in proc.stdout
    )


def test_reference_blas_can_be_forced():
    code = "from farense.fastblas import use_fast_blas; print(use_fast_blas())"
    env = dict(os.environ, FARENSE_BLAS="reference", PYTHONPATH=str(ROOT / "scripts"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("reference BLAS")
