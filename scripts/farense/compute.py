"""How a model computes on this device: the `training.compute` setting, shared by training and
evaluation.

- On a CPU, MLX is fast in float32 only (BLAS); its int4 and float16 kernels are 10-20x slower
  there. So "auto" computes in float32 on a CPU, against the dequantized int4 weights for an
  int4 model: the very values the int4 model holds.
- On a CUDA GPU with memory to spare, "auto" computes against the int4 weights dequantized once
  (see DEQUANTIZE_MAX_SHARE), in training and in evaluation alike.
- On a CUDA GPU where the dequantized copy does not fit, "auto" trains QLoRA against the int4
  weights dequantized just in time, one layer's product at a time (farense.jit_dequant, "jit");
  evaluation then uses MLX's int4 kernels.
- Otherwise (Metal, "native") the model's own kernels.
"""

from __future__ import annotations

# compute: auto on a CUDA GPU computes against the int4 weights dequantized once (to the float
# dtype of their scales: the very values the int4 kernels compute with), when those weights take
# at most this share of the GPU's memory. Measured on an H200 (BENCHMARKS.md):
# - training at the Mistral-7B shape: 16.6k-17.0k tokens/s at batch 4 x 512 against 4.2k-4.3k
#   with the int4 kernels, losses within 1.2e-4 of each other after 10 steps; the peak memory is
#   that of a bf16 model (33.9 GB against 26.9 GB);
# - evaluation of the tiny model on a fresh machine (MLX's kernel cache empty): 31.9 s against
#   202.4 s with the int4 kernels, whose six CUTLASS variants MLX compiles with NVRTC on first use
#   (section 1.8). The values are the same; the sums are added in another order.
DEQUANTIZE_MAX_SHARE = 0.25

# compute: auto trains just in time (jit) at every batch size where the dequantized copy does not
# fit. On the H200 at the Mistral-7B shape, just in time against the int4 kernels (BENCHMARKS.md
# 1.7 and 1.12): 10,470 against about 4,300 tokens/s at 4 x 512; 6,474 against 3,843-3,885 at
# 2 x 512; and, in the same run, 3,055-3,318 against 2,041-2,053 at 1 x 256 with checkpointing (the
# 8gb preset), in 4.96 and 4.48 GB (just in time on another machine: 2,211 and 2,418). (Before farense.dequant_kernel, mx.dequantize's slower
# dequantization made just in time the slower route at 1 x 256: 1,430 tokens/s.)


def compute_route(
    setting: str,
    quantized: bool,
    on_cpu: bool,
    cuda: bool,
    total_memory: int | None,
    dequantized_bytes: int,
    training: bool = True,
) -> str:
    """How a model computes, for training.compute = `setting`:
    "float32" (on a CPU: MLX's int4 and float16 kernels are slow there; QLoRA dequantized first),
    "dequantized" (auto, CUDA, a quantized model whose dequantized weights take at most
    DEQUANTIZE_MAX_SHARE of the GPU's memory), "jit" (training a quantized model: asked for, or
    auto on CUDA when the dequantized weights take more) or "native" (int4 kernels, or the base's
    dtype). "jit" is auto for all else: an evaluation, a model that is not quantized (the LoRA
    baseline's base)."""
    if setting == "jit" and quantized and training:
        return "jit"
    if setting == "jit":
        setting = "auto"
    if setting == "float32" or (setting == "auto" and on_cpu):
        return "float32"
    if setting == "auto" and quantized and cuda and total_memory:
        if dequantized_bytes <= DEQUANTIZE_MAX_SHARE * total_memory:
            return "dequantized"
        if training:
            return "jit"
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
    asks (compute_route)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import dequantize_model, get_total_parameters

    quantized = is_quantized(model)
    on_cpu = mx.default_device() == mx.cpu
    cuda = getattr(getattr(mx, "cuda", None), "is_available", lambda: False)()
    total_memory = mx.device_info().get("total_memory") if cuda else None
    # int4 conversions keep a 2-byte float dtype (bf16/fp16) for scales: the dequantized size
    route = compute_route(
        setting,
        quantized,
        on_cpu,
        cuda,
        total_memory,
        2 * get_total_parameters(model) if cuda else 0,
        training,
    )
    if (
        route == "float32"
        and setting != "float32"
        and 4 * get_total_parameters(model) > CPU_FLOAT32_MAX_SHARE * _system_memory()
    ):
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
    if quantized and cuda and setting in ("auto", "jit"):
        return model, "int4 kernels (the dequantized copy does not fit; evaluation)"
    return model, "int4 kernels" if quantized else "native dtype"
