"""Use an optimised BLAS with MLX's CPU build on Linux, when the machine has one.

The mlx[cpu] wheel ships a reference BLAS (a 1024x1024 float32 matmul at a few GFLOP/s).
Loading OpenBLAS with RTLD_GLOBAL before mlx is imported makes MLX's BLAS calls resolve to
it (about ten times faster here). Debian/Ubuntu: `apt-get install libopenblas0-pthread`.
Set FARENSE_BLAS to a library path to choose another, or to "reference" to keep MLX's own.
"""

from __future__ import annotations

import ctypes
import os
import sys

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

_chosen: str | None = None


def use_fast_blas() -> str:
    """Load an optimised BLAS if one is found; return what MLX will use (for the metrics).
    Must run before `import mlx`; later it cannot change anything."""
    global _chosen
    if _chosen is not None:
        return _chosen
    if not sys.platform.startswith("linux"):
        _chosen = "platform default (Accelerate/Metal on macOS)"
        return _chosen
    if "mlx.core" in sys.modules:
        _chosen = "unknown (mlx was imported first)"
        return _chosen
    wanted = os.environ.get("FARENSE_BLAS", "")
    if wanted == "reference":
        _chosen = "reference BLAS of the mlx wheel (FARENSE_BLAS=reference)"
        return _chosen
    for path in (wanted,) if wanted else CANDIDATES:
        if path and os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
            except OSError:
                continue
            _chosen = f"OpenBLAS ({path})"
            return _chosen
    _chosen = "reference BLAS of the mlx wheel (no OpenBLAS found: apt-get install libopenblas0-pthread)"
    return _chosen
