"""The GPU kernel cache shared by the jobs of a run (farense.kernel_cache): each job reads the
shared modules through links in a folder of its own, and what it compiles reaches the shared
folder whole. MLX's CUDA backend is not on this machine, so MLX's part (writing <module>.ptx,
.txt and .cu into $MLX_PTX_CACHE_DIR) is played by writing those files; on a CPU the pipeline
must leave MLX's cache alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from farense import kernel_cache as kc


def module(folder, name, code=b"\x7fELF machine code"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.cu").write_text(f"// source of {name}\n")
    (folder / f"{name}.txt").write_text(f"{name}_kernel\t_Z{len(name)}{name}v\n")
    (folder / f"{name}.ptx").write_bytes(code)


def test_a_job_reads_the_shelf_and_publishes_what_it_compiled(tmp_path):
    shelf = kc.shelf(tmp_path / "shared", "0.32.4", "sm_90")
    assert shelf == tmp_path / "shared/0.32.4/sm_90"  # one shelf per MLX version and GPU architecture
    module(shelf, "gather_float16")
    first = tmp_path / "job1"
    first.mkdir()
    kc.attach(shelf, first)
    assert sorted(p.name for p in first.iterdir()) == ["gather_float16.cu", "gather_float16.ptx", "gather_float16.txt"]
    assert (first / "gather_float16.ptx").is_symlink()
    assert (first / "gather_float16.ptx").read_bytes() == b"\x7fELF machine code"
    module(first, "qmm_sm80_tn_float16_m16")  # what MLX compiled in this job
    assert kc.publish(first, shelf) == ["qmm_sm80_tn_float16_m16"]  # the linked module is not copied back
    assert sorted(p.name for p in shelf.iterdir()) == sorted(
        f"{m}{s}" for m in ("gather_float16", "qmm_sm80_tn_float16_m16") for s in (".cu", ".ptx", ".txt")
    )
    # the next job, on any machine that sees the folder, starts with both
    second = tmp_path / "job2"
    second.mkdir()
    kc.attach(shelf, second)
    assert (
        second / "qmm_sm80_tn_float16_m16.txt"
    ).read_text() == "qmm_sm80_tn_float16_m16_kernel\t_Z23qmm_sm80_tn_float16_m16v\n"


def test_a_module_another_job_published_first_is_kept(tmp_path):
    shelf = tmp_path / "shelf"
    module(shelf, "fused_add", code=b"first")
    job = tmp_path / "job"
    module(job, "fused_add", code=b"second")  # compiled meanwhile, before this job saw it
    assert kc.publish(job, shelf) == []
    assert (shelf / "fused_add.ptx").read_bytes() == b"first"


def test_a_module_without_its_machine_code_is_not_published(tmp_path):
    job = tmp_path / "job"
    module(job, "half_written")
    (job / "half_written.ptx").unlink()
    assert kc.publish(job, tmp_path / "shelf") == []
    assert not (tmp_path / "shelf").exists()


def test_a_copy_that_fails_leaves_no_file_on_the_shelf(tmp_path, monkeypatch):
    job = tmp_path / "job"
    module(job, "copy_fails")
    real = shutil.copyfile

    def disk_full(source, target):
        if str(source).endswith(".ptx"):
            with open(target, "wb") as out:
                out.write(b"\x7fEL")  # part of it, then the disk is full
            raise OSError(28, "No space left on device")
        return real(source, target)

    monkeypatch.setattr(kc.shutil, "copyfile", disk_full)
    with pytest.raises(OSError):
        kc.publish(job, tmp_path / "shelf")
    # the kernel list may be there; the machine code, which MLX reads first, is not, nor any part of it
    assert sorted(p.name for p in (tmp_path / "shelf").iterdir()) == ["copy_fails.cu", "copy_fails.txt"]


def test_the_folders_of_killed_jobs_are_removed(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    dead = tmp_path / f"{kc.PRIVATE_PREFIX}{gone.pid}-abc123"
    live = tmp_path / f"{kc.PRIVATE_PREFIX}{os.getpid()}-def456"
    other = tmp_path / "farense-kernels-notapid"
    for folder in (dead, live, other):
        module(folder, "fused_add")
    (dead / "link.ptx").symlink_to(live / "fused_add.ptx")
    assert kc.remove_stale(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and other.exists()
    assert (live / "fused_add.ptx").read_bytes() == b"\x7fELF machine code"  # a link removed, not its target


def test_on_a_cpu_or_with_mlx_cache_set_mlx_is_left_alone(tmp_path):
    import mlx.core as mx

    on_cuda = hasattr(mx, "cuda") and mx.cuda.is_available()
    if on_cuda:
        pytest.skip("this machine has MLX's CUDA backend")
    environ = {kc.ENV: str(tmp_path / "shared")}
    assert kc.use_shared_cache(environ) is None
    assert kc.MLX_ENV not in environ
    chosen = {kc.ENV: str(tmp_path / "shared"), kc.MLX_ENV: "/scratch/mine"}
    assert kc.use_shared_cache(chosen) is None and chosen[kc.MLX_ENV] == "/scratch/mine"
    assert not (tmp_path / "shared").exists()
