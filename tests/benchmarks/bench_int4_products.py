"""Where a QLoRA step's products spend their time: the int4 products of one Mistral-7B block, timed
one at a time on a GPU, each way the pipeline can compute them.

    python tests/benchmarks/bench_int4_products.py --rows 256 512 2048
    python tests/benchmarks/bench_int4_products.py --shape tiny --rows 64 --repeats 3   # a CPU smoke run

For each frozen projection of a block (q, k, v, o, gate, up, down; weights int4, group size 64,
bfloat16 scales) and each number of rows M (the tokens of a batch), the mean time of:
  fwd int4      mx.quantized_matmul(x, w, transpose=True): the forward product with MLX's int4 kernels
  bwd int4      mx.quantized_matmul(g, w, transpose=False): the input's gradient with them (the VJP
                MLX's autodiff uses for quantized_matmul)
  dequantize    mx.dequantize(w) alone: one read of the int4 weight, one write of its bf16 copy
  fwd jit       x @ mx.dequantize(w).T (farense.jit_dequant's forward product before 1.12)
  bwd jit       g @ mx.dequantize(w) (its backward product then)
  kernel        farense.dequant_kernel.dequantize(w) alone (on CUDA its own kernel; it must give
                mx.dequantize's values: the largest difference is printed)
  fwd jitk      x @ kernel(w).T: farense.jit_dequant's forward product since
  bwd jitk      g @ kernel(w)
  fwd bf16      x @ W.T against a resident bf16 W (what the dequantized-once route computes)
  bwd bf16      g @ W
Each is run --repeats times in one graph per timing (so launch costs are paid as in a step's graph),
after a warm-up that compiles its kernels. The step of a batch with gradient checkpointing runs
the forward product twice (the forward pass, then its recomputation in the backward) and the
backward product once; the summary adds them up per route for the 32 blocks of Mistral-7B.
Figures, not pass/fail: not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import mlx.core as mx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from farense import dequant_kernel  # noqa: E402

SHAPES = {  # (name, out N, in K) of a block's frozen projections; layers of the model
    "mistral-7b": (
        [
            ("q", 4096, 4096),
            ("k", 1024, 4096),
            ("v", 1024, 4096),
            ("o", 4096, 4096),
            ("gate", 14336, 4096),
            ("up", 14336, 4096),
            ("down", 4096, 14336),
        ],
        32,
    ),
    "tiny": (
        [("q", 256, 256), ("k", 64, 256), ("v", 64, 256), ("o", 256, 256), ("up", 512, 256), ("down", 256, 512)],
        4,
    ),
}
WAYS = (
    "fwd int4",
    "bwd int4",
    "dequantize",
    "fwd jit",
    "bwd jit",
    "kernel",
    "fwd jitk",
    "bwd jitk",
    "fwd bf16",
    "bwd bf16",
)


def _ways(x, g, w, scales, biases, dense):
    deq = lambda: mx.dequantize(w, scales, biases, 64, 4)  # noqa: E731
    kernel = lambda: dequant_kernel.dequantize(w, scales, biases, 64, 4)  # noqa: E731
    return {
        "fwd int4": lambda: mx.quantized_matmul(x, w, scales, biases, transpose=True, group_size=64, bits=4),
        "bwd int4": lambda: mx.quantized_matmul(g, w, scales, biases, transpose=False, group_size=64, bits=4),
        "dequantize": deq,
        "fwd jit": lambda: x @ deq().T,
        "bwd jit": lambda: g @ deq(),
        "kernel": kernel,
        "fwd jitk": lambda: x @ kernel().T,
        "bwd jitk": lambda: g @ kernel(),
        "fwd bf16": lambda: x @ dense.T,
        "bwd bf16": lambda: g @ dense,
    }


def time_way(make, repeats: int) -> float:
    """Mean seconds of one call, over `repeats` calls evaluated in one graph (after a warm-up)."""
    mx.eval([make() for _ in range(2)])
    mx.synchronize()
    start = time.perf_counter()
    mx.eval([make() for _ in range(repeats)])
    mx.synchronize()
    return (time.perf_counter() - start) / repeats


def measure(shape: str, rows: list[int], repeats: int) -> list[dict]:
    projections, _ = SHAPES[shape]
    out = []
    for name, n, k in projections:
        mx.random.seed(0)
        dense = (mx.random.normal((n, k)) * 0.02).astype(mx.bfloat16)
        w, scales, biases = mx.quantize(dense, group_size=64, bits=4)
        dense = mx.dequantize(w, scales, biases, 64, 4)  # the values the int4 weight holds
        mx.eval(w, scales, biases, dense)
        differs = mx.abs(dequant_kernel.dequantize(w, scales, biases, 64, 4) - dense).max().item()
        print(f"{name}: the kernel's dequantization against mx.dequantize, largest difference {differs}")
        for m in rows:
            x = mx.random.normal((m, k)).astype(mx.bfloat16)
            g = mx.random.normal((m, n)).astype(mx.bfloat16)
            mx.eval(x, g)
            row = {"projection": name, "N": n, "K": k, "M": m}
            for way, make in _ways(x, g, w, scales, biases, dense).items():
                row[way] = time_way(make, repeats)
            out.append(row)
            print(
                f"{name:5s} {n:6d}x{k:<6d} M={m:<5d} " + "  ".join(f"{way} {row[way] * 1e6:8.1f} us" for way in WAYS),
                flush=True,
            )
        del dense, w, scales, biases
    return out


def summary(rows: list[dict], shape: str) -> list[str]:
    """Per M: the products of a step with checkpointing (forward twice, backward once) over the
    model's blocks, per route, in ms."""
    _, layers = SHAPES[shape]
    routes = {
        "int4 kernels (fwd int4 x2 + bwd int4)": ("fwd int4", "fwd int4", "bwd int4"),
        "int4 fwd, jit bwd (fwd int4 x2 + bwd jit)": ("fwd int4", "fwd int4", "bwd jit"),
        "jit (fwd jit x2 + bwd jit)": ("fwd jit", "fwd jit", "bwd jit"),
        "jit, the kernel (fwd jitk x2 + bwd jitk)": ("fwd jitk", "fwd jitk", "bwd jitk"),
        "int4 fwd, jit bwd, the kernel": ("fwd int4", "fwd int4", "bwd jitk"),
        "bf16 resident (fwd bf16 x2 + bwd bf16)": ("fwd bf16", "fwd bf16", "bwd bf16"),
    }
    lines = []
    for m in sorted({r["M"] for r in rows}):
        at = [r for r in rows if r["M"] == m]
        lines.append(f"M = {m}: the frozen products of one step with checkpointing, {layers} blocks")
        for label, parts in routes.items():
            ms = layers * sum(r[p] for r in at for p in parts) * 1e3
            lines.append(f"  {label:45s} {ms:8.1f} ms   ({m / (ms / 1e3):,.0f} tokens/s if nothing else ran)")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="mistral-7b")
    ap.add_argument("--rows", type=int, nargs="+", default=[256, 512, 2048])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path, help="append the figures here as one JSON object")
    args = ap.parse_args(argv)
    print(f"MLX {mx.__version__} on {mx.default_device()} ({platform.machine()}), shape {args.shape}", flush=True)
    rows = measure(args.shape, args.rows, args.repeats)
    for line in summary(rows, args.shape):
        print(line)
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps({"mlx": mx.__version__, "shape": args.shape, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
