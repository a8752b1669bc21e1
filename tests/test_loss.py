"""farense.loss.chunked_loss gives mlx-lm's default_loss, value and gradients, in chunks."""

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models import gemma3_text, llama, qwen2
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers

from farense.loss import chunked_loss, output_layer

SHAPES = {
    "llama": (llama, dict(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                          num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=512, tie_word_embeddings=False)),
    "qwen2": (qwen2, dict(model_type="qwen2", hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                          num_key_value_heads=2, rms_norm_eps=1e-6, vocab_size=512, tie_word_embeddings=True)),
    "gemma3": (gemma3_text, dict(model_type="gemma3_text", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=32, vocab_size=512, sliding_window_pattern=2,
                                 query_pre_attn_scalar=32)),
}


def make(arch: str, lora: bool, quantize: bool = False):
    module, args = SHAPES[arch]
    mx.random.seed(3)
    model = module.Model(module.ModelArgs.from_dict(args))
    if arch == "gemma3":
        model.sanitize({})  # no lm_head: tied, as a real Gemma checkpoint
    model.set_dtype(mx.float32)
    if quantize:
        nn.quantize(model, group_size=32, bits=4)
    if lora:
        model.freeze()
        linear_to_lora_layers(model, 2, {"rank": 4, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
        # non-zero B (mlx-lm starts it at zero), so the adapter changes the output and every gradient is real
        model.apply_to_modules(lambda _, m: setattr(m, "lora_b", mx.random.normal(m.lora_b.shape) * 0.05) if hasattr(m, "lora_b") else None)
    mx.eval(model.parameters())
    return model


def batch_and_lengths():
    mx.random.seed(5)
    batch = mx.random.randint(0, 512, (3, 24))
    lengths = mx.array([[1, 23], [6, 17], [4, 23]])  # (first target position, last): a prompt masked, padding
    return batch, lengths


@pytest.mark.parametrize("arch", sorted(SHAPES))
@pytest.mark.parametrize("quantize", [False, True])
def test_loss_and_gradients_equal_default_loss(arch, quantize):
    model = make(arch, lora=True, quantize=quantize)
    assert output_layer(model) is not None
    batch, lengths = batch_and_lengths()
    expected, grads_expected = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    for rows in (5, 7, 69):  # several chunks with a remainder; one chunk
        got, grads = nn.value_and_grad(model, lambda m, b, l, r=rows: chunked_loss(m, b, l, rows=r))(model, batch, lengths)
        assert got[1].item() == expected[1].item()
        assert got[0].item() == pytest.approx(expected[0].item(), rel=1e-5)
        flat, flat_expected = dict(tree_flatten(grads)), dict(tree_flatten(grads_expected))
        assert flat.keys() == flat_expected.keys() and flat
        for name, value in flat.items():
            assert mx.abs(value - flat_expected[name]).max().item() <= 1e-4 * max(1.0, mx.abs(flat_expected[name]).max().item()), name


def test_compiled_step_matches_default(tmp_path):
    from farense.training import make_step

    import mlx.optimizers as optim

    batch, lengths = batch_and_lengths()
    losses = []
    for loss in (default_loss, lambda m, b, l: chunked_loss(m, b, l, rows=8)):
        model = make("gemma3", lora=True)
        step, state = make_step(model, optim.Adam(learning_rate=1e-3), 1, loss=loss)
        out = []
        for _ in range(3):
            value, _, _ = step(batch, lengths, None, True)
            mx.eval(state, value)
            out.append(value.item())
        losses.append(out)
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_small_vocabulary_and_unknown_models_fall_back():
    model = make("llama", lora=False)
    batch, lengths = batch_and_lengths()
    assert chunked_loss(model, batch, lengths)[0].item() == default_loss(model, batch, lengths)[0].item()

    class Wrapped(nn.Module):  # a model this module does not know how to split
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.args = inner.args

        def __call__(self, x):
            return self.inner(x)

    wrapped = Wrapped(model)
    assert output_layer(wrapped) is None
    assert chunked_loss(wrapped, batch, lengths)[0].item() == default_loss(wrapped, batch, lengths)[0].item()
