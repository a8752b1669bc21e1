"""Device profiles: the training settings that depend on the memory of the machine."""

from __future__ import annotations

from pathlib import Path

import yaml

PROFILE_KEYS = ("batch_size", "grad_accumulation", "max_seq_length", "grad_checkpoint")
GIB = 1024**3


def total_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def pick_profile(memory_bytes: int) -> str:
    """8gb below 12 GiB, 16gb below 28 GiB, else 32gb (leaving room for the system)."""
    if memory_bytes < 12 * GIB:
        return "8gb"
    if memory_bytes < 28 * GIB:
        return "16gb"
    return "32gb"


def resolve_training(training: dict, profiles_dir: str | Path, memory_bytes: int | None = None) -> dict:
    """Flat training options for TrainOptions: the profile's values, overridden by any
    non-null key of the config, plus the LoRA and early-stopping settings."""
    name = training["profile"]
    if name == "auto":
        memory_bytes = total_memory_bytes() if memory_bytes is None else memory_bytes
        name = pick_profile(memory_bytes)
    with open(Path(profiles_dir) / f"{name}.yaml", encoding="utf-8") as handle:
        profile = yaml.safe_load(handle)
    resolved = {key: training[key] if training.get(key) is not None else profile[key] for key in PROFILE_KEYS}
    lora = training["lora"]
    resolved.update(
        profile=name if training["profile"] != "auto" else f"auto -> {name}",
        rank=lora["rank"],
        alpha=lora["alpha"],
        dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        num_layers=lora["num_layers"],
        early_stopping_patience=training["early_stopping"]["patience"],
        early_stopping_min_delta=training["early_stopping"]["min_delta"],
    )
    for key in ("learning_rate", "warmup_steps", "decay", "min_learning_rate", "epochs", "mask_prompt", "seed",
                "steps_per_eval", "steps_per_report", "checkpoint_every", "val_batches", "divergence_factor", "compute"):
        resolved[key] = training[key]
    return resolved
