"""The choice of compute route (training.compute) and what it does to a real mlx-lm model."""

import json

import pytest

from farense.compute import DEQUANTIZE_MAX_SHARE, compute_route, prepare

GB = 10**9


@pytest.mark.parametrize(
    "setting, quantized, on_cpu, cuda, memory, size, training, route",
    [
        ("auto", True, True, False, None, 0, True, "float32"),  # a CPU: float32, whatever the model
        ("auto", False, True, False, None, 0, True, "float32"),
        ("float32", True, False, True, 141 * GB, 14 * GB, True, "float32"),  # asked for
        ("auto", True, False, True, 141 * GB, 14 * GB, True, "dequantized"),  # an H200 and a 7B model
        ("auto", True, False, True, 141 * GB, 14 * GB, False, "dequantized"),  # its evaluation too
        ("auto", True, False, True, 24 * GB, 14 * GB, True, "jit"),  # a 24 GB GPU: just in time
        ("auto", True, False, True, 24 * GB, 14 * GB, False, "native"),  # but not to evaluate
        ("auto", False, False, True, 141 * GB, 14 * GB, True, "native"),  # LoRA on the bf16 base
        ("auto", True, False, False, None, 14 * GB, True, "native"),  # Metal keeps the int4 kernels
        ("native", True, False, True, 141 * GB, 14 * GB, True, "native"),
        ("jit", True, False, True, 141 * GB, 14 * GB, True, "jit"),  # asked for
        ("jit", True, False, False, None, 14 * GB, True, "jit"),  # on Metal too, when asked for
        ("jit", True, True, False, None, 0, True, "jit"),  # and on a CPU
        ("jit", True, True, False, None, 0, False, "float32"),  # an evaluation: as auto
        (
            "jit",
            False,
            True,
            False,
            None,
            0,
            True,
            "float32",
        ),  # nothing to dequantize (the LoRA baseline): as auto
        ("jit", False, False, True, 141 * GB, 14 * GB, True, "native"),
    ],
)
def test_compute_route(setting, quantized, on_cpu, cuda, memory, size, training, route):
    assert compute_route(setting, quantized, on_cpu, cuda, memory, size, training) == route


def test_the_memory_threshold_is_a_share_of_the_gpu():
    memory = 100 * GB
    assert compute_route("auto", True, False, True, memory, int(DEQUANTIZE_MAX_SHARE * memory)) == "dequantized"
    assert compute_route("auto", True, False, True, memory, int(DEQUANTIZE_MAX_SHARE * memory) + 1) == "jit"


# a one-layer llama (mlx-lm's own model class) small enough for a CPU test
LLAMA = dict(
    model_type="llama",
    hidden_size=64,
    num_hidden_layers=1,
    intermediate_size=128,
    num_attention_heads=2,
    num_key_value_heads=1,
    rms_norm_eps=1e-5,
    vocab_size=128,
    tie_word_embeddings=False,
)


def int4_llama():
    """A one-layer llama quantized to int4."""
    import mlx.nn as nn
    from mlx_lm.models import llama

    model = llama.Model(llama.ModelArgs(**LLAMA))
    nn.quantize(model, group_size=64, bits=4)
    return model


def test_prepare_on_this_cpu_dequantizes_an_int4_model_to_the_values_it_holds():
    import mlx.core as mx

    model = int4_llama()
    q = model.layers[0].self_attn.q_proj
    expected = mx.dequantize(q.weight, q.scales, q.biases, q.group_size, q.bits)
    if mx.default_device() != mx.cpu:
        pytest.skip("this test is about the CPU route")
    model, note = prepare(model, "auto", training=True)
    assert note == "dequantized int4 weights in float32"
    weight = model.layers[0].self_attn.q_proj.weight
    assert weight.dtype == mx.float32 and mx.array_equal(weight, expected.astype(mx.float32)).item()


def test_a_model_too_large_for_float32_here_keeps_its_own_kernels_or_trains_just_in_time(monkeypatch):
    import mlx.core as mx
    import mlx.nn as nn

    from farense import compute
    from farense.jit_dequant import JitDequantLinear

    if mx.default_device() != mx.cpu:
        pytest.skip("this test is about the CPU route")
    monkeypatch.setattr(compute, "_system_memory", lambda: 1000)  # a machine of 1000 bytes
    model, note = prepare(int4_llama(), "auto", training=False)
    assert note == "int4 kernels" and isinstance(model.layers[0].self_attn.q_proj, nn.QuantizedLinear)

    # Training the same model: int4 weights kept, products in float32 from weights dequantized just in time.
    model, note = prepare(int4_llama(), "auto", training=True)
    q = model.layers[0].self_attn.q_proj
    assert note == "int4 weights dequantized just in time, products in float32"
    assert type(q) is JitDequantLinear and q.weight.dtype == mx.uint32 and q.scales.dtype == mx.float32


def test_the_facts_read_from_a_model_folder_are_those_of_the_loaded_model(tmp_path):
    """folder_facts decides a training job's route before MLX queues work (the CUDA graph settings
    depend on it): it must count as mlx-lm counts the loaded model, packed int4 and int8 weights too."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    from farense.compute import folder_facts, model_facts, route_for

    args = dict(LLAMA, num_hidden_layers=2)
    plain = llama.Model(llama.ModelArgs(**args))
    mixed = llama.Model(llama.ModelArgs(**args))
    # mlx-lm's mixed quantization: the MLP of the first block in 8 bits, the rest in 4
    nn.quantize(
        mixed,
        class_predicate=lambda path, m: (
            hasattr(m, "to_quantized") and ({"group_size": 64, "bits": 8} if "layers.0.mlp" in path else True)
        ),
        group_size=64,
        bits=4,
    )
    quantization = {"group_size": 64, "bits": 4, "mode": "affine"}
    quantization.update(
        {f"model.layers.0.mlp.{p}": {"group_size": 64, "bits": 8} for p in ("gate_proj", "up_proj", "down_proj")}
    )
    for name, model, config in (("plain", plain, args), ("mixed", mixed, dict(args, quantization=quantization))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
        assert folder_facts(folder) == model_facts(model)
        assert route_for("auto", True, *folder_facts(folder)) == route_for("auto", True, *model_facts(model))
    assert model_facts(plain) == (False, model_facts(mixed)[1]) and model_facts(mixed)[0]
