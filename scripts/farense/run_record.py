"""Run records: what one run of a job measured about itself, in results/runs/<job>.json.

Seconds, tokens/s, memory peaks, the machine and the BLAS library differ from one run to the
next even when every output is the same bytes. Kept inside a model folder, an adapter folder or
an evaluation, they would make two builds of the same inputs hash differently (and every job
downstream of them look changed to the lineage). So the artifacts hold only what the inputs
decide (weights, losses, iterations, tokens counted, answers, the compute route), and each job
that measures its own cost writes those figures here, as a declared output of its rule: the
lineage hashes it like any output, and the report reads its cost figures from it. Snakemake's
`benchmark:` files (results/benchmarks/) still give every heavy job's wall time and memory.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from .kernel_cache import ENV as KERNEL_CACHE_ENV
from .textio import write_json_atomic


def peak_memory_gb() -> float:
    """MLX's peak memory since the process started (or since mx.reset_peak_memory), in GB."""
    import mlx.core as mx

    return round(mx.get_peak_memory() / 1e9, 4)


def write_run(path: str | Path, measured: dict, blas: str | None = None) -> dict:
    """Write `measured` with the machine it was measured on; returns the record."""
    record = {
        **measured,
        "blas": blas,
        "platform": platform.platform(),
        "machine": platform.machine(),
        # MLX's own settings from the environment (CUDA graph sizes, the PTX cache...) and the
        # shared kernel cache: they change speed and memory, not results
        "mlx_environment": {
            k: v for k, v in sorted(os.environ.items()) if k.startswith("MLX_") or k == KERNEL_CACHE_ENV
        },
    }
    write_json_atomic(path, record)
    return record


def load_run(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
