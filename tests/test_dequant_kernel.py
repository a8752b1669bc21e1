"""farense.dequant_kernel: the CUDA dequantization of just-in-time QLoRA gives mx.dequantize's values.

On a CUDA GPU the kernel itself runs (its values checked to the bit against mx.dequantize's, for a
weight whose word count is not a multiple of the thread block); elsewhere `dequantize` must fall
back to mx.dequantize, and the formats the kernel does not handle must fall back on CUDA too."""

import mlx.core as mx
import pytest

from farense import dequant_kernel

CUDA = dequant_kernel.available()


def quantized(rows: int, cols: int, bits: int = 4, group_size: int = 64, dtype=mx.bfloat16):
    mx.random.seed(rows * 7 + cols)
    w = (mx.random.normal((rows, cols)) * 0.05).astype(dtype)
    return mx.quantize(w, group_size=group_size, bits=bits)


@pytest.mark.parametrize("rows, cols, group_size", [(96, 256, 64), (40, 128, 32), (33, 512, 128)])
def test_dequantize_gives_mx_dequantize_values(rows, cols, group_size):
    w, scales, biases = quantized(rows, cols, group_size=group_size)
    ours = dequant_kernel.dequantize(w, scales, biases, group_size, 4)
    theirs = mx.dequantize(w, scales, biases, group_size, 4)
    assert ours.shape == (rows, cols) and ours.dtype == scales.dtype
    assert mx.array_equal(ours, theirs).item()


def test_formats_the_kernel_does_not_handle_fall_back():
    w8, s8, b8 = quantized(16, 128, bits=8)
    assert not dequant_kernel.supported(w8, s8, b8, 64, 8, "affine")
    assert mx.array_equal(dequant_kernel.dequantize(w8, s8, b8, 64, 8), mx.dequantize(w8, s8, b8, 64, 8)).item()
    w, scales, biases = quantized(16, 128)
    assert not dequant_kernel.supported(w, scales, None, 64, 4, "affine")
    w32, s32, b32 = quantized(16, 128, dtype=mx.float32)
    assert not dequant_kernel.supported(w32, s32, b32, 64, 4, "affine")
    assert dequant_kernel.supported(w, scales, biases, 64, 4, "affine") == CUDA


@pytest.mark.skipif(not CUDA, reason="the kernel runs on a CUDA GPU only")
def test_the_kernel_runs_on_cuda_and_matches_to_the_bit():
    # 14 x 64 words: not a multiple of the 256-thread block, so the bounds check is exercised
    w, scales, biases = quantized(14, 512)
    assert dequant_kernel.supported(w, scales, biases, 64, 4, "affine")
    assert mx.array_equal(
        dequant_kernel.dequantize(w, scales, biases, 64, 4), mx.dequantize(w, scales, biases, 64, 4)
    ).item()
