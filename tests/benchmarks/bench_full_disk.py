"""A full disk: the tiny build from nothing with results/ on a small filesystem, stopped by a full
disk at different stages, then completed once space is freed. Needs root (mount).

    python tests/benchmarks/bench_full_disk.py [--free 300000 700000 1000000 1400000 2000000]

For each free size: a copy of the workflow whose `results` is a symbolic link to a folder on a
20 MiB tmpfs, and a filler file that leaves that many bytes free; `snakemake --cores 1
results/report.html` with tests/config/tiny.yaml; then the filler deleted and the same command
again, and `python scripts/cli/lineage.py verify`. Prints the line the failing job wrote, how many
temporary files were left under results/, and the exit statuses. Not part of the test suite
(tests/test_full_disk.py runs one such case).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import copy_workflow  # noqa: E402
from kill_sweep import build_command, temporary_files  # noqa: E402

ARGS = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))


def run(wf: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=wf, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def one(base: Path, free: int) -> None:
    disk = base / f"disk{free}"
    disk.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], check=True)
    try:
        wf = copy_workflow(base / f"wf{free}")
        (disk / "results").mkdir()
        (wf / "results").symlink_to(disk / "results")
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - free))
        failed = run(wf, *build_command(*ARGS))
        line = next(
            (x.split("ERROR farense: ", 1)[-1] for x in failed.stdout.splitlines() if "no space left" in x),
            "(no such line)",
        )
        left = len(temporary_files(wf))
        filler.unlink()
        again = run(wf, *build_command(*ARGS))
        verify = run(wf, sys.executable, "scripts/cli/lineage.py", "verify")
        print(f"free {free} B: first run exit {failed.returncode}, temporary files left {left}: {line}")
        print(
            f"    after deleting the filler: exit {again.returncode}; lineage verify exit {verify.returncode}",
            flush=True,
        )
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--free", type=int, nargs="+", default=[300_000, 700_000, 1_000_000, 1_400_000, 2_000_000])
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="full-disk-"))
    try:
        for free in args.free:
            one(base, free)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
