"""A faster int4 dequantization for CUDA GPUs: the weight of just-in-time QLoRA (farense.jit_dequant).

MLX's own `mx.dequantize` on CUDA (0.32.4) gives each thread one byte of the int4 weight: two
values, two 2-byte stores. On an H200 it dequantized a 14336 x 4096 weight (29 MB of int4 in,
117 MB of bfloat16 out) in 130-140 us, about 1.1 TB/s of the GPU's 4.8 (BENCHMARKS.md 1.12), and
at 256 tokens a batch that was more than the product itself (82-89 us in bfloat16). Here each thread
takes one 32-bit word (eight values, one group's scale and bias) and writes them with one 16-byte
store. The arithmetic is MLX's, in the same order and dtype (`q * scale + bias` in the scales'
dtype), so the values are the same bits as `mx.dequantize`'s; a test on the GPU checks it.

Only MLX's affine 4-bit format with float16/bfloat16 scales, on CUDA: `dequantize` falls back to
`mx.dequantize` for everything else (the CPU, Metal, other bit widths).
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

_SOURCE = """
    uint32_t word = blockIdx.x * blockDim.x + threadIdx.x;
    if (word >= WORDS) {
        return;
    }
    uint32_t packed = w[word];
    T scale = scales[word / GROUP_WORDS];
    T bias = biases[word / GROUP_WORDS];
    alignas(16) T values[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        values[i] = static_cast<T>(static_cast<float>((packed >> (4 * i)) & 0xf)) * scale + bias;
    }
    reinterpret_cast<uint4*>(out)[word] = *reinterpret_cast<const uint4*>(values);
"""


@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="farense_dequantize_int4",
        input_names=["w", "scales", "biases"],
        output_names=["out"],
        source=_SOURCE,
    )


def available() -> bool:
    """Whether MLX computes on a CUDA GPU here (the kernel's only home)."""
    cuda = getattr(mx, "cuda", None)
    return bool(cuda is not None and cuda.is_available() and mx.default_device() == mx.gpu)


def supported(w, scales, biases, group_size: int, bits: int, mode: str) -> bool:
    return (
        bits == 4
        and mode == "affine"
        and biases is not None
        and group_size % 8 == 0
        and w.dtype == mx.uint32
        and scales.dtype in (mx.bfloat16, mx.float16)
        and biases.dtype == scales.dtype
        and available()
    )


def dequantize(w, scales, biases, group_size: int, bits: int, mode: str = "affine"):
    """mx.dequantize(w, scales, biases, group_size, bits, mode=mode), by the kernel above where
    `supported`, in the scales' dtype."""
    if not supported(w, scales, biases, group_size, bits, mode):
        return mx.dequantize(w, scales, biases, group_size, bits, mode=mode)
    words = w.size  # a template constant: one compiled kernel per weight size, a handful per model
    (out,) = _kernel()(
        inputs=[w, scales, biases],
        template=[("T", scales.dtype), ("WORDS", words), ("GROUP_WORDS", group_size // 8)],
        grid=(words, 1, 1),
        threadgroup=(256, 1, 1),
        output_shapes=[(*w.shape[:-1], w.shape[-1] * 8)],
        output_dtypes=[scales.dtype],
    )
    return out
