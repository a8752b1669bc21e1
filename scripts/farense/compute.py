"""How a model computes on this device: the `training.compute` setting, shared by training and
evaluation.

- On a CPU, MLX is fast in float32 only (BLAS); its int4 and float16 kernels are 10-20x slower
  there. So "auto" computes in float32 on a CPU, against the dequantized int4 weights for an
  int4 model: the very values the int4 model holds.
- On a CUDA GPU with memory to spare, "auto" trains QLoRA against the int4 weights dequantized
  once (see DEQUANTIZE_MAX_SHARE); evaluation keeps the int4 kernels there, to measure the model
  as it is deployed.
- On a CUDA GPU where the dequantized copy does not fit, "auto" trains QLoRA against the int4
  weights dequantized just in time, one layer's product at a time (farense.jit_dequant, "jit"):
  the memory of the int4 model, near the speed of a bf16 one (BENCHMARKS.md section 1.7).
- Otherwise (Metal, "native") the model's own kernels.
"""

from __future__ import annotations

# compute: auto on a CUDA GPU trains QLoRA against the int4 weights dequantized once (to the
# float dtype of their scales: the very values the int4 kernels compute with), when those weights
# take at most this share of the GPU's memory. Measured on an H200 with the Mistral-7B shape
# (BENCHMARKS.md): 16.6k-17.0k tokens/s at batch 4 x 512 against 4.2k-4.3k with the int4
# kernels, losses within 1.2e-4 of each other after 10 steps; the peak memory is that of a bf16
# model (33.9 GB against 26.9 GB).
DEQUANTIZE_MAX_SHARE = 0.25


def compute_route(setting: str, quantized: bool, on_cpu: bool, cuda: bool, total_memory: int | None, dequantized_bytes: int) -> str:
    """How a model is trained, for training.compute = `setting`:
    "float32" (on a CPU: MLX's int4 and float16 kernels are slow there; QLoRA dequantized first),
    "dequantized" (auto, CUDA, a quantized model whose dequantized weights take at most
    DEQUANTIZE_MAX_SHARE of the GPU's memory), "jit" (a quantized model, asked for, or auto on
    CUDA when the dequantized weights take more) or "native" (int4 kernels, or the base's dtype)."""
    if setting == "float32" or (setting == "auto" and on_cpu):
        return "float32"
    if setting == "jit" and quantized:
        return "jit"
    if setting == "auto" and quantized and cuda and total_memory:
        return "dequantized" if dequantized_bytes <= DEQUANTIZE_MAX_SHARE * total_memory else "jit"
    return "native"


# On a CPU, "auto" computes in float32 only when the float32 weights take at most this share of
# the machine's memory.
CPU_FLOAT32_MAX_SHARE = 0.5


def _system_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def is_quantized(model) -> bool:
    import mlx.nn as nn

    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def prepare(model, setting: str, training: bool):
    """(model, note): the model ready to compute as `setting` (auto | native | float32 | jit)
    asks; the dequantized and jit routes are for training only (an evaluation asked for jit
    computes as auto does: it measures the model as it is deployed)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import dequantize_model, get_total_parameters

    if setting == "jit" and not training:
        setting = "auto"
    quantized = is_quantized(model)
    on_cpu = mx.default_device() == mx.cpu
    cuda = training and getattr(getattr(mx, "cuda", None), "is_available", lambda: False)()
    total_memory = mx.device_info().get("total_memory") if cuda else None
    # int4 conversions keep a 2-byte float dtype (bf16/fp16) for scales: the dequantized size
    route = compute_route(setting, quantized, on_cpu, cuda, total_memory, 2 * get_total_parameters(model) if cuda else 0)
    if route == "float32" and setting == "auto" and 4 * get_total_parameters(model) > CPU_FLOAT32_MAX_SHARE * _system_memory():
        # a model too large to hold in float32 here (a 7B model on a CPU): int4 weights
        # dequantized just in time when training (float32 products), else its own kernels
        route = "jit" if quantized and training else "native"
    if route == "float32":
        if quantized:
            model = dequantize_model(model)
        model.set_dtype(mx.float32)
        return model, ("dequantized int4 weights" if quantized else "base weights") + " in float32"
    if route == "jit":
        from .jit_dequant import use_jit_dequant

        if on_cpu:  # float32 products: scales, biases and norms in float32, the weights stay int4
            model.set_dtype(mx.float32)
        use_jit_dequant(model)
        dtype = next(v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating))
        return model, f"int4 weights dequantized just in time, products in {str(dtype).split('.')[-1]}"
    if route == "dequantized":
        model = dequantize_model(model)
        dtype = next(v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating))
        return model, f"dequantized int4 weights in {str(dtype).split('.')[-1]} (GPU memory to spare)"
    return model, "int4 kernels" if quantized else "native dtype"
