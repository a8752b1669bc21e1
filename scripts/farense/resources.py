"""What each job asks a scheduler for: memory (MiB) and time (minutes), from the size of the corpus,
the size of the base model and the memory preset. The rules declare them as `resources:`; Slurm
gets them as --mem and --time (profiles/slurm/). Locally Snakemake only limits what a run is given
with --resources (profiles/default/ gives `gpu=1`), so these figures change nothing there.

Each figure is an upper bound with room over what was measured (BENCHMARKS.md, sections 5 and 6);
a job that needs more is given it with `--set-resources <rule>:mem_mb=...` in a profile.
"""

from __future__ import annotations

import math
from pathlib import Path

MIB = 1024**2

# Data stages. One worker process with its imports peaked at 203-470 MB RSS over 10 to 1000 MB of
# corpus, the stage's process tree at 285-708 MB PSS with 2 workers (BENCHMARKS.md 5): a base and
# a share per worker, plus what grows with the corpus (the duplicate index and per-record arrays:
# 438 MB PSS at 1000 MB against 232 MB at 101 MB with one worker, 0.23 MB per MB of corpus).
DATA_BASE_MB = 512
DATA_WORKER_MB = 256
DATA_MB_PER_CORPUS_MB = 0.5
# The three stages ran at 1.47 MB/s of corpus with one worker on a busy day (BENCHMARKS.md 5):
# a job is given 10 minutes plus one for every 30 MB (0.5 MB/s).
DATA_BASE_MINUTES = 10
DATA_CORPUS_MB_PER_MINUTE = 30

# Model stages. A process with MLX, mlx-lm and transformers imported holds 144 MB (CPU build); on
# CUDA a fresh process that compiles MLX's kernels peaked at 4738 MB (evaluate_base of Gemma 3
# 270M, cold) against 1948-1987 MB warm (BENCHMARKS.md 6). A base of 2048 MB, plus multiples of
# the base's weights in 16-bit floats (Gemma 3 270M: 511 MiB):
MODEL_BASE_MB = 2048
# build_base_model: a GGUF import holds each tensor dequantized to float32 (2x) and its 16-bit copy
# (Gemma: 1122 MB max RSS);
BUILD_WEIGHTS_FACTOR = 3
# convert_int4: the 16-bit model and its int4 copy with scales (Gemma: 1513 MB);
CONVERT_WEIGHTS_FACTOR = 2
# training and evaluation: on a CPU a float32 copy of the weights (2x) beside the int4 or 16-bit
# ones, activations, and logits over the vocabulary (Gemma: 2460-2630 MB training, up to 4738 MB
# evaluating), never more than the memory preset, which names the machine the recipe is made for.
COMPUTE_WEIGHTS_FACTOR = 6
# Importing or converting: 10 minutes plus 10 a GiB of 16-bit weights (Gemma: 28 s and 20 s on an
# H200); a hub model not yet in the cache is downloaded by convert_int4 (14 GB for Mistral-7B).
MODEL_BASE_MINUTES = 10
MODEL_MINUTES_PER_GIB = 10
UNKNOWN_MODEL_MINUTES = 120
# compare_models, model_card, lineage and report: JSON, numpy and HTML (the data stages' imports
# alone take about 150 MB).
SMALL_JOB_MB = 1024
SMALL_JOB_MINUTES = 10

# Parameters of the packaged GGUF models (base_model.PACKAGED), counted from the file's tensors:
# its header takes 27 s to read with gguf's reader, too slow for every parse of the workflow.
PACKAGED_PARAMETERS = {"gemma3-270m": 268_098_176}
# A GGUF of 4-bit weights holds about a quarter of their 16-bit size (an overestimate for files
# of more bits: the Gemma file is 253 MB for 511 MiB of 16-bit weights).
GGUF_TO_16BIT = 4


def corpus_megabytes(paths) -> float:
    """MiB of the raw files the data stages read."""
    return sum(Path(p).stat().st_size for p in paths) / MIB


def data_stage_mem_mb(threads: int, corpus_mb: float) -> int:
    return math.ceil(DATA_BASE_MB + DATA_WORKER_MB * threads + DATA_MB_PER_CORPUS_MB * corpus_mb)


def data_stage_minutes(corpus_mb: float) -> int:
    return DATA_BASE_MINUTES + math.ceil(corpus_mb / DATA_CORPUS_MB_PER_MINUTE)


def tiny_parameters(tiny: dict) -> int:
    """Parameters of the tiny model of this shape (untied output layer, as tiny_model builds it)."""
    h, vocab = tiny["hidden_size"], tiny["vocab_size"]
    head_dim = h // tiny["num_attention_heads"]
    attention = 2 * h * h + 2 * h * tiny["num_key_value_heads"] * head_dim
    block = attention + 3 * h * tiny["intermediate_size"] + 2 * h
    return tiny["num_hidden_layers"] * block + 2 * vocab * h + h


def base_weights_mb(spec, tiny: dict) -> float | None:
    """MiB of the base model's weights in 16-bit floats, known before any job runs; None for a hub
    id (its size is known once convert_int4 has downloaded it)."""
    if spec.kind == "tiny":
        return 2 * tiny_parameters(tiny) / MIB
    if spec.kind == "package":
        return 2 * PACKAGED_PARAMETERS[spec.name] / MIB if spec.name in PACKAGED_PARAMETERS else None
    if spec.kind == "gguf":
        return GGUF_TO_16BIT * Path(spec.path).stat().st_size / MIB
    if spec.kind == "folder":
        return sum(p.stat().st_size for p in Path(spec.path).glob("*.safetensors")) / MIB or None
    return None


def model_stage_mem_mb(weights_mb: float | None, preset_mb: int) -> dict[str, int]:
    """Memory of build_base_model ("build"), convert_int4 ("convert"), and training and evaluation
    ("compute"); the memory preset's size for all three when the weights' size is unknown."""
    if weights_mb is None:
        return {"build": preset_mb, "convert": preset_mb, "compute": preset_mb}
    return {
        "build": math.ceil(MODEL_BASE_MB + BUILD_WEIGHTS_FACTOR * weights_mb),
        "convert": math.ceil(MODEL_BASE_MB + CONVERT_WEIGHTS_FACTOR * weights_mb),
        "compute": min(preset_mb, math.ceil(MODEL_BASE_MB + COMPUTE_WEIGHTS_FACTOR * weights_mb)),
    }


def model_build_minutes(weights_mb: float | None) -> int:
    """Time of build_base_model and convert_int4."""
    if weights_mb is None:
        return UNKNOWN_MODEL_MINUTES
    return MODEL_BASE_MINUTES + math.ceil(MODEL_MINUTES_PER_GIB * weights_mb / 1024)
