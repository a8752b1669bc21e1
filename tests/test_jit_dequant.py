"""QLoRA against int4 weights dequantized just in time (training.compute: jit, farense.jit_dequant):
the same numbers as the weights dequantized once, and no dequantized weight kept for the backward
pass, on a real mlx-lm model and MLX's own memory counters."""

import gc

import pytest

mx = pytest.importorskip("mlx.core")
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.models import llama  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402
from mlx_lm.utils import dequantize_model  # noqa: E402

from farense.jit_dequant import JitDequantLinear, use_jit_dequant  # noqa: E402
from farense.training import make_step  # noqa: E402

LORA = {"rank": 8, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]}


def model_for(route: str):
    """A small llama in int4 (the same random weights every call), its LoRA layers on q/k/v."""
    args = llama.ModelArgs(
        model_type="llama",
        hidden_size=128,
        num_hidden_layers=2,
        intermediate_size=256,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=256,
        tie_word_embeddings=False,
    )
    mx.random.seed(0)
    model = llama.Model(args)
    nn.quantize(model, group_size=64, bits=4)
    if route == "once":
        model = dequantize_model(model)
    elif route == "jit":
        assert use_jit_dequant(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down in each layer, and the head
    model.set_dtype(mx.float32)
    model.freeze()
    mx.random.seed(1)
    linear_to_lora_layers(model, 2, LORA)
    return model


def test_training_just_in_time_gives_the_numbers_of_the_weights_dequantized_once():
    mx.random.seed(2)
    batches = [mx.random.randint(0, 256, (2, 33)) for _ in range(4)]
    lengths = mx.array([[0, 32], [0, 20]])
    found = {}
    for route in ("once", "jit", "int4"):
        model = model_for(route)
        optimizer = optim.Adam(learning_rate=1e-2)
        step, state = make_step(model, optimizer, 1)
        model.train()
        losses = []
        for batch in batches:
            loss, _, _ = step(batch, lengths, None, True)
            mx.eval(state, loss)
            losses.append(loss.item())
        found[route] = (losses, dict(tree_flatten(model.trainable_parameters())))
    assert isinstance(model_for("jit").layers[0].self_attn.q_proj.linear, JitDequantLinear)
    # the same weights, the same float32 products: the same losses and adapters to rounding
    for a, b in zip(found["jit"][0], found["once"][0]):
        assert a == pytest.approx(b, abs=1e-5)
    for name, value in found["jit"][1].items():
        assert mx.allclose(value, found["once"][1][name], atol=1e-4).item(), name
    # MLX's int4 kernels compute the same products in another order: close, not equal
    for a, b in zip(found["jit"][0], found["int4"][0]):
        assert a == pytest.approx(b, abs=1e-3)
    assert found["jit"][0][-1] < found["jit"][0][0]  # it trains


class Stack(nn.Module):
    """`n` frozen int4 blocks (two products each) and one small trainable vector: a network whose
    dequantized weights far outweigh its activations."""

    def __init__(self, n: int, width: int, hidden: int, checkpoint: bool = False):
        super().__init__()
        self.blocks = [[nn.Linear(width, hidden, bias=False), nn.Linear(hidden, width, bias=False)] for _ in range(n)]
        self.checkpoint = checkpoint

    def __call__(self, x):
        x = x * self.gain
        for up, down in self.blocks:

            def block(x, up=up, down=down):
                return x + mx.tanh(down(mx.tanh(up(x))))

            x = mx.checkpoint(block)(x) if self.checkpoint else block(x)
        return x


def peak_of_a_gradient(route: str, n: int, checkpoint: bool = False) -> tuple[int, int]:
    """(peak bytes over the resident ones during one compiled value_and_grad of `n` blocks, bytes
    of their weights dequantized to float32); with `checkpoint`, each block recomputed in the
    backward pass (mx.checkpoint, as mlx-lm's grad_checkpoint does)."""
    mx.random.seed(0)
    width, hidden = 512, 2048
    model = Stack(n, width, hidden, checkpoint)
    nn.quantize(model, group_size=64, bits=4)
    if route == "jit":
        use_jit_dequant(model)
    else:  # autodiff's own backward through a weight dequantized in the forward pass

        def plain(self, x):
            return x @ mx.dequantize(self.weight, self.scales, self.biases, self.group_size, self.bits).T

        for _, module in model.named_modules():
            if isinstance(module, nn.QuantizedLinear):
                module.__class__ = type("Plain", (nn.QuantizedLinear,), {"__call__": plain})
    model.freeze()
    model.gain = mx.ones((width,))
    x = mx.random.normal((16, width), key=mx.random.key(1))
    mx.eval(model.parameters(), x)
    grad = mx.compile(lambda x: nn.value_and_grad(model, lambda m, x: (m(x) ** 2).mean())(model, x))
    mx.eval(grad(x))  # compiled once
    gc.collect()
    mx.clear_cache()
    resident = mx.get_active_memory()
    mx.reset_peak_memory()
    loss, grads = grad(x)
    mx.eval(loss, grads)
    return mx.get_peak_memory() - resident, 2 * n * width * hidden * 4


def test_no_dequantized_weight_is_kept_for_the_backward_pass():
    plain, weights = peak_of_a_gradient("plain", 8)
    # Plain autodiff keeps every dequantized weight from the forward pass to the backward: the
    # peak holds them all (measured here: 81.7 MB over the resident memory for 67 MB of weights,
    # 8 blocks).
    assert plain > 0.9 * weights
    # Just in time, a few at a time whatever the depth: measured here 29.3 and 31.9 MB at 8 and 24
    # blocks (weights of 67 and 201 MB; with checkpointing 34.3 and 34.8 MB). Batches of 16 rows,
    # not 64: a quarter of the products on a CPU's reference BLAS (the two tests: 19 s, not 81 s)
    # and the same finding, since the weights, not the activations, are what is measured.
    jit_8, weights_8 = peak_of_a_gradient("jit", 8)
    jit_24, weights_24 = peak_of_a_gradient("jit", 24)
    assert jit_24 - jit_8 < 0.15 * (weights_24 - weights_8), (jit_8, jit_24, weights_8, weights_24)
    assert jit_24 < 0.5 * weights_24


def test_with_checkpointing_the_recomputed_forward_does_not_keep_the_weights_either():
    # mx.checkpoint recomputes each block in the backward pass from the same frozen weights:
    # without mx.depends on the forward's input, mx.compile merged the recomputed dequantization
    # with the first one and kept every weight (the H200 at 1 x 256: 15.6 GB for 4.1 GB of int4).
    jit_8, weights_8 = peak_of_a_gradient("jit", 8, checkpoint=True)
    jit_24, weights_24 = peak_of_a_gradient("jit", 24, checkpoint=True)
    assert jit_24 - jit_8 < 0.15 * (weights_24 - weights_8), (jit_8, jit_24, weights_8, weights_24)
