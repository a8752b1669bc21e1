"""Facts about a saved model directory: size on disk, parameters, bits per weight."""

from __future__ import annotations

import json
from pathlib import Path


def weights_bytes(model_dir: str | Path) -> int:
    """The weights only: the folder's *.safetensors files (0 for a folder that does not exist)."""
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def all_files_bytes(model_dir: str | Path) -> int:
    """Every file in the folder, at any depth (tokenizer, config, weights)."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())


def describe(model_dir: str | Path, model) -> dict:
    """Size on disk and bits per weight of a loaded model (mlx-lm's own count)."""
    from mlx_lm.utils import compute_bits_per_weight, get_total_parameters

    config = json.loads((Path(model_dir) / "config.json").read_text())
    return {
        "path": str(model_dir),
        "weights_bytes": weights_bytes(model_dir),
        "directory_bytes": all_files_bytes(model_dir),
        "parameters": int(get_total_parameters(model)),
        "bits_per_weight": round(float(compute_bits_per_weight(model)), 3),
        "quantization": config.get("quantization"),
    }
