"""Use an optimised BLAS with MLX's CPU build on Linux, when the machine has one.

The mlx[cpu] wheel links a reference BLAS/LAPACK as separate shared objects
(mlx_cpu.libs/libblas-*.so, liblapack-*.so). A library loaded with RTLD_GLOBAL before
mlx is imported comes first in the symbol lookup, so MLX's cblas_sgemm (and LAPACK) calls
resolve to it. Searched in this order:
  1. Debian/Ubuntu OpenBLAS (`apt-get install libopenblas0-pthread`);
  2. Intel MKL from PyPI (`pip install mkl`, Linux x86_64 only: about 290 MB of wheels,
     850 MiB installed, with intel-openmp and tbb); its libmkl_rt exports the plain names.
PyPI's scipy-openblas32/64 cannot serve: their names are prefixed (scipy_cblas_sgemm,
scipy_cblas_sgemm64_). cmeel-openblas and ngsolve-openblas need the system's libgfortran.so.5
(cmeel's is also built for AVX-512 CPUs only), so they give nothing a pip-only install lacks.
Measured on the 2-core dev machine (shared, load 4-6, so noisy), 1024x1024 float32 mx.matmul,
GFLOP/s (mean of 20, 3 runs): reference 1.7-2.8, Debian OpenBLAS 0.3.21 47-80, MKL 2026.2 45-95;
a tiny llama forward in mlx_lm 220-280 ms, 15-19 ms, 17-24 ms; same logits (2.6e-6) with each.
FARENSE_BLAS=/path/to/lib.so picks a library, FARENSE_BLAS=reference keeps MLX's own.
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
REFERENCE = "reference BLAS of the mlx wheel"

_chosen: str | None = None


def wheel_libraries() -> list[str]:
    """BLAS libraries installed by PyPI wheels in this environment (today: MKL's libmkl_rt)."""
    from importlib import metadata

    try:
        files = metadata.distribution("mkl").files or ()
    except metadata.PackageNotFoundError:
        return []
    found = (os.path.normpath(f.locate()) for f in files if f.name.startswith("libmkl_rt.so"))
    return sorted((p for p in found if os.path.exists(p)), reverse=True)  # .so.3 before .so.2


def _load(path: str) -> str | None:
    """Load `path` for MLX and describe it; None (and not made global) if it can't serve."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        if not hasattr(lib, "cblas_sgemm"):  # e.g. scipy-openblas: scipy_-prefixed names
            return None
        ctypes.CDLL(path, mode=os.RTLD_GLOBAL | os.RTLD_NOW)  # promote: MLX now binds to it
    except OSError:
        return None
    if hasattr(lib, "openblas_get_config"):
        lib.openblas_get_config.restype = ctypes.c_char_p
        return f"{' '.join(lib.openblas_get_config().decode().split()[:2])} ({path})"
    if hasattr(lib, "MKL_Get_Version_String"):
        lib.MKL_Set_Interface_Layer(0)  # LP64: MLX passes 32-bit ints, whatever MKL_INTERFACE_LAYER says
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, len(buf))
        version = buf.value.decode().split(" Version ")[-1].split("-")[0]
        return f"Intel MKL {version} ({path})"
    return f"BLAS ({path})"


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
        _chosen = f"{REFERENCE} (FARENSE_BLAS=reference)"
        return _chosen
    paths = [wanted] if wanted else [*CANDIDATES, *wheel_libraries()]
    for path in paths:
        if path and os.path.exists(path) and (described := _load(path)):
            _chosen = described
            return _chosen
    if wanted:
        _chosen = f"{REFERENCE} (FARENSE_BLAS={wanted} not loadable or exports no cblas_sgemm)"
    else:
        _chosen = f"{REFERENCE} (no optimised BLAS found: apt-get install libopenblas0-pthread, or pip install mkl)"
    return _chosen
