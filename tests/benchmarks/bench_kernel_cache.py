"""The GPU kernel cache shared through the run folder (`kernel_cache`): what a second machine saves.

    python tests/benchmarks/bench_kernel_cache.py [--target results/adapters/qlora] [--cores 1] [--config KEY=VALUE ...]

Copies the workflow (as the tests do: no results/, no .snakemake/) into two new folders, A and B, and runs
`snakemake --cores N TARGET` in A with an empty kernel cache (kernel_cache=<tmp>/shared), then in
B with the cache A left: B stands for a second node of a cluster, which sees the run folder's
cache but has compiled nothing itself. Prints each job's wall time in A and B, each training's
tokens/s, and the modules on the cache's shelves after each run. Run it first thing on a fresh
machine for a cold A (MLX's own cache in /tmp is not used by either run).

On a machine without an NVIDIA GPU, MLX compiles no kernels into this cache: the shelves stay
empty and the figures are the plain times. BENCHMARKS.md 1.10 holds what the H200 printed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from bench_real_model import job_times, load  # noqa: E402
from conftest import copy_workflow  # noqa: E402  (the tests' copy of the workflow: no outputs, no caches)


def modules(shared: Path) -> dict[str, int]:
    """Modules (their machine code, <name>.ptx) on each shelf: <mlx version>/<GPU architecture>."""
    return {
        str(shelf.relative_to(shared)): len(list(shelf.glob("*.ptx")))
        for shelf in sorted(shared.glob("*/*"))
        if shelf.is_dir()
    }


def build(folder: Path, target: str, cores: int, config: list[str], shared: Path) -> float:
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), target]
    command += ["--config", f"kernel_cache={shared}", *config]
    print(f"$ (in {folder}) {' '.join(command)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-6000:])
        raise SystemExit(f"snakemake failed in {folder} after {wall:.0f} s")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="results/adapters/qlora", help="what to build in each folder")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--config", nargs="*", default=[], help="more snakemake --config KEY=VALUE pairs")
    parser.add_argument("--dir", type=Path, help="where to make the two folders (default: a new temporary one)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="farense-kernel-cache-"))
    shared = base / "shared"
    walls, times, shelves, speeds = {}, {}, {}, {}
    for name in ("A", "B"):
        folder = copy_workflow(base / name)
        walls[name] = build(folder, args.target, args.cores, args.config, shared)
        times[name] = {job: seconds for job, seconds, _ in job_times(folder / "results")}
        shelves[name] = modules(shared)
        speeds[name] = {
            job: load(folder / "results/runs" / f"{job}.json").get("tokens_per_second")
            for job in ("train_qlora", "train_lora")
        }
    print(f"\n{'job':<22} {'A: empty cache, s':>18} {'B: A cache, s':>15}")
    for job in sorted(set(times["A"]) | set(times["B"])):
        a, b = times["A"].get(job), times["B"].get(job)
        print(f"{job:<22} {a if a is None else round(a, 1)!s:>18} {b if b is None else round(b, 1)!s:>15}")
    print(f"{'snakemake, wall':<22} {walls['A']:>18.1f} {walls['B']:>15.1f}")
    for job in ("train_qlora", "train_lora"):
        if speeds["A"][job] or speeds["B"][job]:
            print(f"{job + ' tokens/s':<22} {speeds['A'][job]!s:>18} {speeds['B'][job]!s:>15}")
    print(f"\nmodules on the shelves after A: {shelves['A'] or 'none'}; after B: {shelves['B'] or 'none'}")
    print(f"folders: {base}")


if __name__ == "__main__":
    main()
