"""Memory presets (config/memory/): the training settings that depend on the memory of the machine.

A preset is named after the memory it is made for (8gb, 16gb, 32gb); `training.memory` picks one,
or `auto` picks from the memory of the machine that reads the workflow.
"""

from __future__ import annotations

from pathlib import Path

from .config_check import load_yaml

PRESET_KEYS = ("batch_size", "grad_accumulation", "max_seq_length", "grad_checkpoint")
GIB = 1024**3

# Memory-bound training on Linux (MLX's CUDA backend; its CPU backend has no graphs): the low-memory
# presets (checkpointing) and QLoRA trained just in time. MLX closes a CUDA graph after this many
# ops or MB of inputs (its defaults on an H100/H200: 100 ops, 1,000 MB), read once per process
# when it first queues work on the GPU, and a graph's inputs stay alive until it has run. Smaller
# graphs queue less ahead of the GPU. At the Mistral-7B shape on one H200 (BENCHMARKS.md 1.13),
# just in time at 4 x 512 with no memory limit: 15,278 tokens/s in 16.73 GB with 4 / 50, 15,473-
# 15,521 in 17.49 GB with 8 / 100, 15,736 in 18.69 GB with 16 / 200, 15,907 in 30.03 GB with MLX's
# defaults; with MLX's defaults and the memory limit train() used before (1 GB), 10,044-11,608 in
# 16.5-16.7 GB. The 8gb preset's step (1 x 256, checkpointing, the limit of 0.75 GB), over 64 steps
# (1.14): 2,061-2,410 tokens/s with 4 / 50, 2,237-2,396 with 8 / 100, all in 4.96 GB (2,761-3,308
# in 5.01-5.03 GB with 4 / 50 on a second H200); 1 / 10 and 2 / 25 were no faster, and without the
# limit every size passed 5 GB.
# Not on macOS: Metal's defaults are smaller already, and what these would do there was not measured.
LOW_MEMORY_GRAPHS = {"MLX_MAX_OPS_PER_BUFFER": "4", "MLX_MAX_MB_PER_BUFFER": "50"}


def total_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def pick_preset(memory_bytes: int) -> str:
    """8gb below 12 GiB, 16gb below 28 GiB, else 32gb (leaving room for the system)."""
    if memory_bytes < 12 * GIB:
        return "8gb"
    if memory_bytes < 28 * GIB:
        return "16gb"
    return "32gb"


def preset_name(training: dict, memory_bytes: int | None = None) -> str:
    """The preset `training.memory` names, `auto` decided from this machine's memory."""
    name = training["memory"]
    if name == "auto":
        name = pick_preset(total_memory_bytes() if memory_bytes is None else memory_bytes)
    return name


def preset_megabytes(name: str) -> int:
    """The memory a preset is made for, in MiB: 16gb -> 16384."""
    return int(name.removesuffix("gb")) * 1024


def graph_settings(memory_bound: bool, platform: str) -> dict[str, str]:
    """The environment variables that memory-bound training (checkpointing, or just in time) calls
    for on `platform` (sys.platform): smaller CUDA graphs on Linux, else none."""
    return dict(LOW_MEMORY_GRAPHS) if memory_bound and platform.startswith("linux") else {}


def graphs_bounded(environ) -> bool:
    """Whether `environ` holds CUDA graphs at most as large as LOW_MEMORY_GRAPHS (a value set
    before the workflow started wins over graph_settings', so it may hold others)."""
    return all(
        environ.get(name, "").isdigit() and int(environ[name]) <= int(value)
        for name, value in LOW_MEMORY_GRAPHS.items()
    )


def resolve_training(training: dict, presets_dir: str | Path, memory_bytes: int | None = None) -> dict:
    """Flat training options for TrainOptions: the preset's values, overridden by any
    non-null key of the config, plus the LoRA and early-stopping settings."""
    name = preset_name(training, memory_bytes)
    preset = load_yaml(Path(presets_dir) / f"{name}.yaml")
    resolved = {key: training[key] if training.get(key) is not None else preset[key] for key in PRESET_KEYS}
    lora = training["lora"]
    resolved.update(
        memory=name if training["memory"] != "auto" else f"auto -> {name}",
        rank=lora["rank"],
        alpha=lora["alpha"],
        dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        num_layers=lora["num_layers"],
        early_stopping_patience=training["early_stopping"]["patience"],
        early_stopping_min_delta=training["early_stopping"]["min_delta"],
        keep=training["keep"],
    )
    for key in (
        "learning_rate",
        "warmup_steps",
        "decay",
        "min_learning_rate",
        "epochs",
        "mask_prompt",
        "seed",
        "steps_per_eval",
        "steps_per_report",
        "checkpoint_every",
        "val_batches",
        "divergence_factor",
        "compute",
    ):
        resolved[key] = training[key]
    return resolved
