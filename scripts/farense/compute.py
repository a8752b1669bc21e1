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

import json
import math
import struct
from pathlib import Path

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
# 1.7, 1.12-1.14): 12,961-15,278 tokens/s in 16.73 GB at 4 x 512 (small CUDA graphs, no memory
# limit) against about 4,300 for the int4 kernels; and 2,061-2,410 against 2,009-2,070 tokens/s over
# 64 steps at 1 x 256 with checkpointing (the 8gb preset), in 4.96 and 4.48 GB. (Before
# farense.dequant_kernel, mx.dequantize's slower dequantization made just in time the slower route
# at 1 x 256: 1,430 tokens/s.)


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


def cuda_available() -> bool:
    """Whether this MLX has a CUDA GPU (a build without the CUDA backend has no mx.cuda)."""
    import mlx.core as mx

    return getattr(getattr(mx, "cuda", None), "is_available", lambda: False)()


def model_facts(model) -> tuple[bool, int]:
    """(quantized, parameters) of a loaded model; packed int4 weights count as the weights they hold."""
    from mlx_lm.utils import get_total_parameters

    return is_quantized(model), get_total_parameters(model)


def folder_facts(model_dir: str | Path) -> tuple[bool, int]:
    """model_facts of an MLX model folder, read from config.json and the safetensors headers alone:
    no weight is read and MLX runs no op, so a training job knows its route, and so the CUDA graph
    settings it needs (farense.memory_presets.graph_settings), before MLX first uses the GPU (MLX
    reads those settings once, when it first queues work there)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    quantization = config.get("quantization") or {}
    shapes = {}
    for path in sorted(model_dir.glob("model*.safetensors")):  # the files mlx-lm loads
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        shapes.update({name: info["shape"] for name, info in header.items() if name != "__metadata__"})
    parameters = 0
    for name, shape in shapes.items():
        module, _, leaf = name.rpartition(".")
        packed = f"{module}.scales" in shapes
        if packed and leaf in ("scales", "biases"):
            continue  # the quantization's own arrays
        size = math.prod(shape)
        if packed and leaf == "weight":
            # per-module settings (mixed quantization) are dicts under the module's path
            own = quantization.get(module)
            bits = own.get("bits", quantization["bits"]) if isinstance(own, dict) else quantization["bits"]
            size = size * 32 // bits
        parameters += size
    return bool(quantization), parameters


def route_for(setting: str, training: bool, quantized: bool, parameters: int) -> str:
    """The route (compute_route) for a model of these facts on this machine. Asks MLX only which
    device it uses and how much memory that has, which queues nothing on the GPU."""
    import mlx.core as mx

    on_cpu = mx.default_device() == mx.cpu
    cuda = cuda_available()
    total_memory = mx.device_info().get("total_memory") if cuda else None
    # int4 conversions keep a 2-byte float dtype (bf16/fp16) for scales: the dequantized size
    route = compute_route(setting, quantized, on_cpu, cuda, total_memory, 2 * parameters if cuda else 0, training)
    if route == "float32" and setting != "float32" and 4 * parameters > CPU_FLOAT32_MAX_SHARE * _system_memory():
        # a model too large to hold in float32 here (a 7B model on a CPU): int4 weights
        # dequantized just in time when training (float32 products), else its own kernels
        route = "jit" if quantized and training else "native"
    return route


def prepare(model, setting: str, training: bool, route: str | None = None):
    """(model, note): the model ready to compute as `setting` (auto | native | float32 | jit)
    asks (compute_route), or by `route` where the caller decided it already (route_for)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import dequantize_model

    quantized = is_quantized(model)
    on_cpu = mx.default_device() == mx.cpu
    cuda = cuda_available()
    if route is None:
        route = route_for(setting, training, *model_facts(model))
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
