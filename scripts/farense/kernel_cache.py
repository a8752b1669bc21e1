"""A kernel cache shared by every job and every machine of a run (`kernel_cache` in the config).

MLX's CUDA backend compiles each kernel the first time a process meets it (NVRTC, to the GPU's
own machine code) and keeps the result in `$MLX_PTX_CACHE_DIR`, by default `/tmp/mlx/<version>/ptx`:
the default build with an empty cache spent 162 s of its 283 s compiling (BENCHMARKS.md 1.8), and
every node of a cluster pays that again, since /tmp is its own. This cache lives in the workflow's
folder instead (on a cluster, the shared file system the jobs run in), so that a kernel is
compiled once per run folder, whichever machine meets it first.

MLX's own cache is not safe to share as it is: it writes its files in place, so a job reading a
module that another job is writing loads a truncated one; its files are named after the kernel
alone, so one GPU model's machine code would be loaded on another. So each job gets a folder of
its own, holding links to what the shared cache has for this MLX version and GPU architecture;
MLX reads through the links and writes what it compiles there, and when the job ends, each new
module is copied into the shared cache whole (a temporary name, then a rename: a reader sees all
of it or nothing), its kernel list before its code, which MLX reads first.

Nothing happens on a CPU or a Mac (they do not read this cache), nor when MLX_PTX_CACHE_DIR is
already set (the user's choice, or a parent job's: the data-parallel ranks share their launcher's).
A job killed before it could clean up leaves its private folder (named after its process id) in
the temporary folder; the next job on that machine removes it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "FARENSE_KERNEL_CACHE"  # the shared folder, set by rules/common.smk from `kernel_cache`
MLX_ENV = "MLX_PTX_CACHE_DIR"
# MLX writes <module>.ptx (the machine code), <module>.txt (its kernels' names), <module>.cu (the
# source). It reads .ptx, then .txt: the .txt must be there before the .ptx appears.
PUBLISH_ORDER = (".cu", ".txt", ".ptx")


def gpu_architecture() -> str | None:
    """The compute capability of the GPU this process uses, as "sm_90"; None without an NVIDIA GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    command = ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"]
    if visible.isdigit():
        command += ["-i", visible]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    caps = out.split()
    return "sm_" + caps[0].replace(".", "") if caps else None


def shelf(shared: str | Path, mlx_version: str, architecture: str) -> Path:
    """The shared cache's folder for one MLX version and one GPU architecture."""
    return Path(shared) / mlx_version / architecture


def attach(shelf_dir: Path, private: Path) -> None:
    """Fill `private` (an empty folder) with links to every module on the shelf."""
    if not shelf_dir.is_dir():
        return
    for entry in shelf_dir.iterdir():
        if entry.suffix in PUBLISH_ORDER and not entry.name.startswith("."):
            (private / entry.name).symlink_to(entry.resolve())


def publish(private: Path, shelf_dir: Path) -> list[str]:
    """Copy the modules compiled into `private` onto the shelf, each file whole; the modules'
    names. A module the shelf already has (another job compiled it meanwhile) is left as it is."""
    compiled = {
        entry.stem
        for entry in private.iterdir()
        if entry.suffix == ".ptx" and entry.is_file() and not entry.is_symlink()  # links: read from the shelf
    }
    published = []
    for module in sorted(compiled):
        if (shelf_dir / f"{module}.ptx").exists():
            continue
        shelf_dir.mkdir(parents=True, exist_ok=True)
        for suffix in PUBLISH_ORDER:
            source = private / f"{module}{suffix}"
            if not source.is_file():
                continue
            fd, tmp = tempfile.mkstemp(dir=shelf_dir, prefix=f".{module}{suffix}.")
            os.close(fd)
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, shelf_dir / source.name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        published.append(module)
    return published


PRIVATE_PREFIX = "farense-kernels-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(tmp_root: Path) -> list[Path]:
    """Remove the private folders of jobs that are gone (killed before they could clean up: a
    SIGKILL, an out-of-memory kill); a folder is named after its job's process id."""
    removed = []
    for folder in Path(tmp_root).glob(f"{PRIVATE_PREFIX}*-*"):
        pid = folder.name[len(PRIVATE_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def use_shared_cache(environ=os.environ) -> Path | None:
    """Point MLX at a private folder seeded from the shared cache, and publish what this process
    compiles when it exits; the shelf in use, or None where this does not apply."""
    shared = environ.get(ENV)
    if not shared or environ.get(MLX_ENV):
        return None
    import mlx.core as mx  # importing compiles nothing: the cache folder is read at the first kernel

    if not (hasattr(mx, "cuda") and mx.cuda.is_available()):
        return None
    architecture = gpu_architecture()
    if architecture is None:
        return None
    shelf_dir = shelf(shared, mx.__version__, architecture)
    remove_stale(Path(tempfile.gettempdir()))
    private = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
    attach(shelf_dir, private)
    environ[MLX_ENV] = str(private)

    def _publish_and_clean():
        try:
            publish(private, shelf_dir)
        except OSError as err:  # a shelf that cannot be written costs the next job time, not this job's result
            print(f"farense: kernel cache {shelf_dir} not updated: {err}", file=sys.stderr)
        finally:
            shutil.rmtree(private, ignore_errors=True)

    atexit.register(_publish_and_clean)
    return shelf_dir
