"""A full disk: each writer's error is recognised, the stage stops with one line naming the job and
the file, nothing partial is left, and the same command completes once space is freed. The disk is
a size-limited tmpfs mounted for the test (root only, as in CI)."""

import errno
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, copy_built, snakemake

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))
DATA = ("results/clean", "results/data")


@contextmanager
def small_filesystem(path: Path, size: str = "20m"):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (root and mount(8) needed): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # a process still in it


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of the filesystem (what the user later deletes)."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(shutil.disk_usage(disk).free - leave, 0))
    return filler


@pytest.fixture
def disk(tmp_path):
    with small_filesystem(tmp_path / "disk") as path:
        yield path


def test_each_writer_s_words_for_a_full_disk_are_recognised(tmp_path):
    from farense.diskspace import out_of_space

    assert out_of_space(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    # pyarrow keeps the errno in its text; Rust's writers (tokenizers, safetensors) too
    assert out_of_space(OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"), tmp_path)
    assert out_of_space(Exception("No space left on device (os error 28)"), tmp_path)
    # MLX says only how much it could not write: a full disk if less than that is free
    assert not out_of_space(RuntimeError("[write] Unable to write 64 bytes to file."), tmp_path)
    assert out_of_space(RuntimeError(f"[write] Unable to write {10**18} bytes to file."), tmp_path)
    wrapped = RuntimeError("stage failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert out_of_space(wrapped, tmp_path)
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"), tmp_path)
    assert not out_of_space(ValueError("bad value"), tmp_path)


def test_a_full_disk_stops_each_writer_naming_the_file_and_leaving_nothing(disk):
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import pyarrow as pa
    import pyarrow.parquet as pq
    from dataclasses import asdict

    from farense import checkpoints, training
    from farense.diskspace import DiskFullError
    from farense.textio import atomic_dir, atomic_path

    fill(disk, leave=64 * 1024)
    big = pa.table({"text": [f"{i} " * 200 for i in range(2000)]})  # about 4 MB of text
    with pytest.raises(DiskFullError, match=f"while writing {disk}/corpus.parquet .*filesystem {disk}"):
        with atomic_path(disk / "corpus.parquet", ".parquet") as tmp:
            pq.write_table(big, tmp, compression="none")
    with pytest.raises(DiskFullError, match=f"while writing {disk}/base "):
        with atomic_dir(disk / "base") as tmp:
            mx.save_safetensors(str(tmp / "model.safetensors"), {"w": mx.zeros((1024, 1024))})  # 4 MiB
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]

    # A checkpoint that cannot be written leaves the one before it whole.
    model = nn.Linear(256, 256)
    optimizer = optim.Adam(learning_rate=1e-3)
    optimizer.init(model.trainable_parameters())
    (disk / "filler").unlink()

    def save(iteration):
        checkpoints.save(disk, model, optimizer, {"run": "run", **asdict(training.RunState(iteration=iteration))})

    training._save_best(model, disk / "best.safetensors")
    save(10)
    fill(disk, leave=64 * 1024)  # the next checkpoint takes 3 x 257 kB
    with pytest.raises(DiskFullError, match=f"while writing {disk}/last "):
        save(20)
    assert sorted(p.name for p in disk.iterdir()) == ["best.safetensors", "filler", "last"]
    resumed = checkpoints.resume(disk, model, optimizer, "run", lambda c: training.RunState(**c))
    assert resumed.counters["iteration"] == 10


def test_a_build_on_a_full_disk_names_job_and_file_and_completes_once_space_is_freed(built_data, disk, tmp_path):
    # results/ is a link to a folder on the small filesystem (README: results on another disk),
    # holding the data stages' outputs; the base model (about 330 kB) no longer fits.
    wf = copy_built(built_data, tmp_path / "wf")
    shutil.rmtree(wf / "results")
    (disk / "results").mkdir()
    for folder in (*DATA, "results/lineage"):
        shutil.copytree(built_data / folder, disk / folder)  # times kept: up to date for Snakemake
    (wf / "results").symlink_to(disk / "results")
    filler = fill(disk, leave=96 * 1024)

    failed = snakemake(wf, "results/models/base", *TINY, check=False)
    assert failed.returncode != 0
    line = next(x for x in failed.stdout.splitlines() if "no space left" in x)
    assert "build_base_model: no space left on the device while writing results/models/base " in line
    assert f"filesystem {disk}" in line and "free some space there and run the same command again" in line
    models = disk / "results/models"
    assert not models.exists() or list(models.iterdir()) == []  # no partial folder, no temporary one

    filler.unlink()
    done = snakemake(wf, "results/models/base", *TINY)
    assert "rule build_base_model:" in done.stdout and (wf / "results/models/base/config.json").exists()
    for folder in DATA:  # the data already built is untouched
        for path in (built_data / folder).iterdir():
            assert (disk / folder / path.name).read_bytes() == path.read_bytes()
    assert not [p for p in (disk / "results").rglob("*") if ".tmp" in p.name]
