"""training.processes: train_qlora as 2 data-parallel ranks through the real mlx.launch (ring
backend on this CPU), against the one-process adapter of the shared tiny build."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, copy_built, snakemake

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))


def val_losses(adapter: Path) -> dict[int, float]:
    with open(adapter / "metrics.csv", encoding="utf-8") as handle:
        return {int(r["step"]): float(r["val_loss"]) for r in csv.DictReader(handle) if r["val_loss"]}


def test_two_ranks_train_the_adapter_one_process_trains(tiny_report, tmp_path):
    """tiny.yaml trains with batch 2: two ranks with one sequence each (of other lengths, so
    other token counts) must give one process's adapter and validation losses."""
    import mlx.core as mx

    import shutil

    wf = copy_built(tiny_report, tmp_path / "wf")
    shutil.rmtree(wf / "results/checkpoints/qlora")  # else the ranks resume the one-process run's last checkpoint
    snakemake(
        wf,
        "results/adapters/qlora",
        *TINY,
        "--config",
        'training={"processes": 2}',
        "--forcerun",
        "train_qlora",
        cores=2,
    )
    one, two = (
        mx.load(str(tiny_report / "results/adapters/qlora/adapters.safetensors")),
        mx.load(str(wf / "results/adapters/qlora/adapters.safetensors")),
    )
    assert one.keys() == two.keys()
    assert max(float(mx.abs(one[k] - two[k]).max()) for k in one) <= 1e-5
    assert val_losses(wf / "results/adapters/qlora") == pytest.approx(
        val_losses(tiny_report / "results/adapters/qlora"), abs=1e-5
    )
    run = json.loads((wf / "results/runs/train_qlora.json").read_text())
    assert run["processes"] == 2 and run["resumed_from"] is None
    summary = lambda wf: json.loads((wf / "results/adapters/qlora/training_summary.json").read_text())  # noqa: E731
    two_ranks, one_process = summary(wf), summary(tiny_report)
    # the same run (iterations, tokens, padding, best step); the validation loss summed over two
    # ranks in another order than one process sums it
    assert two_ranks.pop("best_val_loss") == pytest.approx(one_process.pop("best_val_loss"), abs=1e-5)
    # and so is the last training loss, rounded to 6 decimals (5.366936 against 5.366937 seen)
    assert two_ranks.pop("final_train_loss") == pytest.approx(one_process.pop("final_train_loss"), abs=1e-5)
    assert two_ranks == one_process
    log = (wf / "results/logs/train_qlora.log").read_text()
    assert "data-parallel training: 2 ranks" in log and not (wf / "results/checkpoints/qlora.job.json").exists()


def rank_pids(rank: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and b"farense.adapter_job" in (proc / "cmdline").read_bytes()
                and f"MLX_RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0")
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_a_rank_that_dies_stops_the_job_with_a_clear_error(tiny_report, tmp_path):
    wf = copy_built(tiny_report, tmp_path / "wf")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "results/adapters/qlora",
        *TINY,
        "--forcerun",
        "train_qlora",
        "--config",
        'training={"processes": 2, "epochs": 20}',
    ]
    proc = subprocess.Popen(cmd, cwd=wf, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not rank_pids(1) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        victims = rank_pids(1)
        assert victims, "rank 1 never started"
        time.sleep(3)  # into training
        killed = time.monotonic()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)  # never a hang: a minute at most
        stopped = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and stopped < 60
    log = (wf / "results/logs/train_qlora.log").read_text()
    assert "data-parallel training failed: rank 1 exited with code" in log, log[-2000:]
    assert "Error in rule train_qlora" in out
    assert not (wf / "results/adapters/qlora").exists() and not (wf / "results/runs/train_qlora.json").exists()
