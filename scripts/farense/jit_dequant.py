"""QLoRA against int4 weights dequantized just in time: the `training.compute` route "jit".

The int4 weights stay resident. Each frozen linear layer dequantizes its weight for its own
product and lets it go: in the forward pass for `x @ W.T`, and again, recomputed, in the backward
pass for the input's gradient `g @ W`. No bfloat16 copy of a weight lives from one layer to the
next, and none from the forward pass to the backward. The base weight's gradient is never formed
(the base is frozen; its cotangents below are lazy zeros that nothing evaluates).

Why not MLX's int4 kernels (`quantized_matmul`): on an H200 at the Mistral-7B shape they trained
at 4.3k tokens/s, against 17.0k for a bfloat16 model (BENCHMARKS.md section 1.1); cuBLAS's bf16
GEMM is that much faster than the int4 kernels at thousands of rows. Dequantizing a layer costs
one pass over its int4 weights and one write of its bf16 copy: with farense.dequant_kernel, 83 us
for a 14336 x 4096 weight, so that even at 256 tokens a batch dequantizing and multiplying (129 us)
beats MLX's int4 kernel (285 us; BENCHMARKS.md 1.12).

Why a custom VJP: a plain `x @ dequantize(w).T` (the "int4-otf" experiment of
bench_gpu_training.py) made autodiff keep every dequantized weight for the backward pass, and
peaked above the bf16 model (37.7 GB against 33.9 GB at 4 x 512). Here the backward dequantizes
again.

Why `mx.depends`: each dequantization reads `w` through `mx.depends(w, x)` (forward) or
`mx.depends(w, cotangent)` (backward), a different array in the graph for each use. Read from
`w` itself, every dequantization of a layer has the same inputs, and mx.compile's
common-subexpression pass merges them back into one weight kept from the forward pass to the
backward: with gradient checkpointing (whose recomputed forward reads the same frozen `w`) the
H200 peaked at 15.6 GB at 1 x 256, the bf16 weights nearly all alive. It also makes each weight
only once its input exists, not early and held.
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

from . import dequant_kernel


@lru_cache(maxsize=None)
def _product(group_size: int, bits: int, mode: str, has_biases: bool):
    """x @ dequantize(w).T with a VJP that recomputes the weight; one function per format."""

    def weight(w, scales, biases, dtype):
        # on CUDA farense.dequant_kernel's kernel (mx.dequantize's values, 2-3x faster), else mx.dequantize
        biases = biases if has_biases else None
        return dequant_kernel.dequantize(w, scales, biases, group_size, bits, mode=mode).astype(dtype)

    @mx.custom_function
    def product(x, w, scales, biases):
        return x @ weight(mx.depends(w, x), scales, biases, x.dtype).T

    @product.vjp
    def product_vjp(primals, cotangent, output):
        x, w, scales, biases = primals
        w_again = mx.depends(w, cotangent)
        grad_x = cotangent @ weight(w_again, scales, biases, cotangent.dtype)
        return grad_x, mx.zeros_like(w), mx.zeros_like(scales), mx.zeros_like(biases)

    return product


class JitDequantLinear(nn.QuantizedLinear):
    """A QuantizedLinear (same parameters, same files) that computes with its weight dequantized
    just in time; mlx-lm's LoRALinear wraps it as it wraps a QuantizedLinear."""

    def __call__(self, x):
        biases = self.get("biases")
        product = _product(self.group_size, self.bits, self.mode, biases is not None)
        y = product(x, self["weight"], self["scales"], biases if biases is not None else self["scales"])
        if "bias" in self:
            y = y + self["bias"]
        return y


def use_jit_dequant(model) -> int:
    """Turn every QuantizedLinear of `model` into a JitDequantLinear, in place (before LoRA layers
    are added). The embedding stays int4: it is a lookup, not a product. Returns how many."""
    count = 0
    for _, module in model.named_modules():
        if type(module) is nn.QuantizedLinear:
            module.__class__ = JitDequantLinear
            count += 1
    return count


def uses_jit_dequant(model) -> bool:
    return any(isinstance(m, JitDequantLinear) for _, m in model.named_modules())
