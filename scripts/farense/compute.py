"""How a model computes on this device: the `training.compute` setting, shared by training and
evaluation.

On a CPU, MLX is fast in float32 only (BLAS); its int4 and float16 kernels are 10-20x slower
there. So "auto" computes in float32 on a CPU, against the dequantized int4 weights for an int4
model: the very values the int4 model holds. On Metal/CUDA it keeps the model's own kernels.
"""

from __future__ import annotations


def is_quantized(model) -> bool:
    import mlx.nn as nn

    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def apply_compute(model, setting: str):
    """(model, note): the model ready to compute as `setting` (auto | native | float32) asks."""
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model

    quantized = is_quantized(model)
    if setting == "float32" or (setting == "auto" and mx.default_device() == mx.cpu):
        if quantized:
            model = dequantize_model(model)
        model.set_dtype(mx.float32)
        return model, ("dequantized int4 weights" if quantized else "base weights") + " in float32"
    return model, "int4 kernels" if quantized else "native dtype"
