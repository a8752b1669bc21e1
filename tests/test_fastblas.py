"""farense.fastblas: each BLAS it can pick gives MLX right results, and is the one MLX calls.

The choice is made before mlx is imported, so each case runs in a fresh interpreter with
FARENSE_BLAS set. Libraries not on this machine are skipped. No timing assertions.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from farense import fastblas

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import ctypes, json, os
from farense.fastblas import use_fast_blas
desc = use_fast_blas()
import numpy as np
import mlx.core as mx
rng = np.random.default_rng(0)
a, b = rng.standard_normal((300, 200), dtype=np.float32), rng.standard_normal((200, 100), dtype=np.float32)
m = rng.standard_normal((48, 48), dtype=np.float32) + 8 * np.eye(48, dtype=np.float32)
with mx.stream(mx.cpu):
    c = np.array(mx.array(a) @ mx.array(b))
    inv = np.array(mx.linalg.inv(mx.array(m)))  # LAPACK (getrf/getri)
ref = a.astype(np.float64) @ b.astype(np.float64)
wanted = os.environ.get("FARENSE_BLAS", "")
serving = None  # does MLX's global lookup of cblas_sgemm land in the chosen library?
if wanted and os.path.exists(wanted):
    try:
        mine = ctypes.cast(ctypes.CDLL(wanted).cblas_sgemm, ctypes.c_void_p).value
        serving = mine == ctypes.cast(ctypes.CDLL(None).cblas_sgemm, ctypes.c_void_p).value
    except AttributeError:
        serving = False
print(json.dumps({"desc": desc, "serving": serving,
                  "matmul_err": float(np.max(np.abs(c - ref)) / np.max(np.abs(ref))),
                  "inv_err": float(np.max(np.abs(inv @ m - np.eye(48))))}))
"""


def probe(blas: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FARENSE_BLAS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "scripts"), env.get("PYTHONPATH", "")])
    if blas is not None:
        env["FARENSE_BLAS"] = blas
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["matmul_err"] < 1e-5 and result["inv_err"] < 1e-3, result
    return result


def optimised_libraries() -> list[str]:
    seen, paths = set(), []
    for path in (*fastblas.CANDIDATES, *fastblas.wheel_libraries()):
        if os.path.exists(path) and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            paths.append(path)
    return paths


def prefixed_library() -> str | None:
    """An OpenBLAS with scipy_-prefixed names: numpy's own copy, or the scipy-openblas32 wheel."""
    for name, pattern in (
        ("numpy", "../numpy.libs/libscipy_openblas*.so"),
        ("scipy_openblas32", "lib/libscipy_openblas*.so"),
    ):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            found = glob.glob(os.path.join(next(iter(spec.submodule_search_locations)), pattern))
            if found:
                return found[0]
    return None


def test_reference_blas_is_right():
    assert probe("reference")["desc"].startswith(fastblas.REFERENCE)


@pytest.mark.parametrize(
    "path", optimised_libraries() or [pytest.param(None, marks=pytest.mark.skip("no optimised BLAS here"))]
)
def test_optimised_blas_is_used_and_right(path):
    result = probe(path)
    assert result["desc"].startswith(("OpenBLAS", "Intel MKL")) and path in result["desc"], result
    assert result["serving"] is True, result


def test_prefixed_openblas_is_refused():
    path = prefixed_library()
    if path is None:
        pytest.skip("no scipy-openblas library here")
    result = probe(path)
    assert result["desc"].startswith(fastblas.REFERENCE) and "no cblas_sgemm" in result["desc"], result
    assert result["serving"] is False, result


def test_default_choice_is_the_first_available():
    libs = optimised_libraries()
    desc = probe(None)["desc"]
    if libs:
        assert desc.startswith(("OpenBLAS", "Intel MKL")) and f"({libs[0]})" in desc, desc
    else:
        assert desc.startswith(fastblas.REFERENCE), desc
