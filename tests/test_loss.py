"""farense.loss.chunked_loss gives mlx-lm's default_loss, value and gradients, in chunks."""

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models import gemma2, gemma3_text, llama, qwen2, qwen3
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.trainer import default_loss, grad_checkpoint
from mlx_lm.tuner.utils import linear_to_lora_layers

from farense import loss as loss_module
from farense.loss import chunked_loss, output_layer
from farense.training import make_step

BODY = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
SHAPES = {
    "llama": (llama, dict(BODY, model_type="llama", rms_norm_eps=1e-5, vocab_size=512, tie_word_embeddings=False)),
    "qwen2": (qwen2, dict(BODY, model_type="qwen2", rms_norm_eps=1e-6, vocab_size=512, tie_word_embeddings=True)),
    "qwen3": (
        qwen3,
        dict(
            BODY,
            model_type="qwen3",
            rms_norm_eps=1e-6,
            vocab_size=512,
            head_dim=16,
            max_position_embeddings=512,
            rope_theta=10000.0,
            tie_word_embeddings=False,
        ),
    ),
    "gemma3": (
        gemma3_text,
        dict(
            BODY,
            model_type="gemma3_text",
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            vocab_size=4096,
            sliding_window=8,
            sliding_window_pattern=2,
            query_pre_attn_scalar=32,
        ),
    ),
}
ROWS = 3 * 23  # positions in batch_and_lengths()


def make(arch: str, lora: bool = True, quantize: bool = False, **changes):
    module, args = SHAPES[arch]
    mx.random.seed(3)
    model = module.Model(module.ModelArgs.from_dict(dict(args, **changes)))
    if arch == "gemma3":
        model.sanitize({})  # no lm_head: tied, as in a real Gemma 3 checkpoint
    if quantize:
        nn.quantize(model, group_size=32, bits=4)
    if lora:
        model.freeze()
        linear_to_lora_layers(
            model, 2, {"rank": 4, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]}
        )
        # non-zero B (mlx-lm starts it at zero), so that the adapters change the output and every gradient is real
        model.apply_to_modules(
            lambda _, m: setattr(m, "lora_b", mx.random.normal(m.lora_b.shape) * 0.05) if hasattr(m, "lora_b") else None
        )
    mx.eval(model.parameters())
    return model


def batch_and_lengths(vocab: int = 512):
    mx.random.seed(5)
    batch = mx.random.randint(0, vocab, (3, 24))
    lengths = mx.array([[1, 23], [6, 17], [4, 23]])  # (first target position, last): prompts masked, padding
    return batch, lengths


def assert_same(model, loss, reference=default_loss, vocab: int = 512):
    """loss's value and gradients (nn.value_and_grad) are reference's."""
    batch, lengths = batch_and_lengths(vocab)
    (expected, ntoks_expected), grads_expected = nn.value_and_grad(model, reference)(model, batch, lengths)
    (got, ntoks), grads = nn.value_and_grad(model, loss)(model, batch, lengths)
    assert ntoks.item() == ntoks_expected.item() and ntoks.dtype == ntoks_expected.dtype
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert_same_tree(grads, grads_expected)


def assert_same_tree(got, expected):
    got, expected = dict(tree_flatten(got)), dict(tree_flatten(expected))
    assert got.keys() == expected.keys() and got
    for name, value in expected.items():
        value = np.array(value)
        assert np.abs(value).max() > 0, name
        np.testing.assert_allclose(np.array(got[name]), value, rtol=1e-4, atol=1e-4 * np.abs(value).max(), err_msg=name)


@pytest.mark.parametrize("arch", sorted(SHAPES))
@pytest.mark.parametrize("quantize", [False, True], ids=["float32", "int4"])
def test_lora_loss_and_gradients_equal_default_loss(arch, quantize):
    model = make(arch, quantize=quantize)
    assert output_layer(model) is not None
    for rows in (16, 7):  # 69 positions: 4 chunks and 5 left, 9 chunks and 6 left
        assert_same(model, partial(chunked_loss, rows=rows), vocab=model.args.vocab_size)


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_every_weight_trained_with_the_output_layer(arch):
    # All weights trainable: the tied embedding gets gradient from the input side and from each chunk.
    model = make(arch, lora=False)
    assert_same(model, partial(chunked_loss, rows=16), vocab=model.args.vocab_size)


def test_adapter_on_the_output_layer():
    model = make("llama")
    model.lm_head = LoRALinear.from_base(model.lm_head, r=4)
    model.lm_head.lora_b = mx.random.normal(model.lm_head.lora_b.shape) * 0.05
    assert any(name.startswith("lm_head.") for name, _ in tree_flatten(model.trainable_parameters()))
    assert_same(model, partial(chunked_loss, rows=16))


def test_large_vocabulary_chunks_by_itself(monkeypatch):
    model = make("gemma3", vocab_size=65536)
    monkeypatch.setattr(loss_module, "LOGITS_PER_CHUNK", 65536 * 16)  # 16 positions per chunk
    assert loss_module.chunk_rows(65536) == 16
    assert_same(model, chunked_loss, vocab=65536)


def test_with_gradient_checkpointing():
    model = make("gemma3")
    block = type(model.layers[0])
    call = block.__call__
    grad_checkpoint(model.layers[0])  # replaces the class's __call__: put back after
    try:
        assert_same(model, partial(chunked_loss, rows=16), vocab=4096)
    finally:
        block.__call__ = call


def test_compiled_step_gives_default_loss_and_gradients():
    batch, lengths = batch_and_lengths(4096)
    results = []
    for loss in (default_loss, partial(chunked_loss, rows=16)):
        model = make("gemma3")
        step, state = make_step(model, optim.Adam(learning_rate=1e-3), 1, loss=loss)
        values = []
        for update in (True, True, False):  # two updates, then the loss and gradients at the weights they reached
            value, ntoks, grads = step(batch, lengths, None, update)
            mx.eval(state, value, grads)
            values.append(value.item())
        results.append((values, grads))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    assert_same_tree(results[1][1], results[0][1])


def test_falls_back_to_default_loss():
    batch, lengths = batch_and_lengths()
    small = make("llama", lora=False)  # 512 tokens: default_loss unless asked to chunk
    one_chunk = partial(chunked_loss, rows=ROWS)
    for model, loss in ((small, chunked_loss), (small, one_chunk), (make("gemma3", lora=False), one_chunk)):
        assert_identical(loss(model, batch, lengths), default_loss(model, batch, lengths))

    class Wrapped(nn.Module):  # a model this module does not know how to split
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.args = inner.args

        def __call__(self, x):
            return self.inner(x)

    # gemma2 has a .model body, but soft-caps its logits after the output layer
    capped = gemma2.Model(
        gemma2.ModelArgs(
            model_type="gemma2",
            hidden_size=64,
            num_hidden_layers=2,
            intermediate_size=128,
            num_attention_heads=2,
            head_dim=32,
            rms_norm_eps=1e-6,
            vocab_size=512,
            num_key_value_heads=1,
        )
    )
    for model in (Wrapped(small), capped):
        assert output_layer(model) is None
        assert_identical(chunked_loss(model, batch, lengths, rows=16), default_loss(model, batch, lengths))


def assert_identical(got, expected):
    mx.eval(got, expected)
    assert got[0].item() == expected[0].item() and got[1].item() == expected[1].item()
