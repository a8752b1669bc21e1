"""The workflow on a real Slurm cluster: one node started from Debian's packages (tests/slurm_cluster.py),
the jobs submitted by snakemake-executor-plugin-slurm with profiles/slurm, as a user would.

One run builds both adapters from nothing (clean_text to train_qlora and train_lora, each a Slurm job)
while the test cancels an evaluation that runs beside them (scancel, as an operator or a time limit
would stop it). Skipped only where a cluster cannot be started (not root, no packages, no plugin);
FARENSE_REQUIRE_SLURM=1 (CI) makes that a failure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slurm_cluster
from conftest import ROOT, copy_workflow

# Both adapters (and the chain before them), and the evaluation of the unquantized base, which
# needs only the base: it runs beside the int4 conversion and training, and is the one cancelled.
TARGETS = ("results/adapters/qlora", "results/adapters/lora", "results/eval/base_full.json")
CANCELLED_RULE, CANCELLED_COMMENT = "evaluate", "rule_evaluate_wildcards_base_full"
CONFIG = (
    "--configfile",
    "config/config.yaml",
    str(ROOT / "tests/config/tiny.yaml"),
    str(ROOT / "tests/config/slurm.yaml"),
)
# What only this test cluster needs on top of profiles/slurm: it has no accounting (no slurmdbd),
# so job states come from squeue; and status checks 1 s after a submission or a finished job
# instead of 10 and 40 s (the plugin then waits 10 s longer after each check that finds none
# finished: a job of a few seconds is seen 12 s after its submission).
CLUSTER_OPTIONS = (
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
)
# The same bytes as the local build (conftest.tiny_report), job for job.
SAME_AS_LOCAL = (
    "results/clean/corpus.parquet",
    "results/data/records.parquet",
    "results/data/train.jsonl",
    "results/data/valid.jsonl",
    "results/data/test.jsonl",
    "results/models/base/model.safetensors",
    "results/models/base-int4/model.safetensors",
    "results/adapters/qlora/adapters.safetensors",
    "results/adapters/lora/adapters.safetensors",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = slurm_cluster.missing()
    if why is None and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        why = "snakemake-executor-plugin-slurm is not installed (pip install -r requirements-slurm.txt)"
    if why:
        if os.environ.get("FARENSE_REQUIRE_SLURM") == "1":
            pytest.fail(f"FARENSE_REQUIRE_SLURM=1 but no Slurm cluster can be started: {why}")
        pytest.skip(f"no Slurm cluster can be started here: {why}")
    started = time.monotonic()
    cluster = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        print(f"\nSlurm cluster started in {time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        cluster.stop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cancel_when_running(cluster, log: Path, proc: subprocess.Popen, timeout: float = 600) -> str:
    """Wait until the evaluation's script runs (its first log line), then scancel its Slurm job;
    return the job id. The script then loads the model, computes losses and answers for a minute
    or more (tests/config/slurm.yaml): it is cancelled part way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "evaluating base_full" in log.read_text(errors="replace"):
            running = [j for j in cluster.jobs() if j["comment"] == CANCELLED_COMMENT and j["state"] == "RUNNING"]
            if running:
                cluster.run("scancel", running[0]["id"])
                return running[0]["id"]
        time.sleep(0.2)
    raise AssertionError(f"the evaluation never ran as a Slurm job (snakemake exited {proc.poll()})")


def test_every_job_is_a_slurm_job_and_a_cancelled_one_is_reported(cluster, tiny_report, tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    out = tmp_path / "snakemake.out"
    started = time.monotonic()
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--workflow-profile",
                "profiles/slurm",
                *TARGETS,
                "--keep-going",
                *CONFIG,
                *CLUSTER_OPTIONS,
            ],
            cwd=wf,
            env=cluster.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            cancelled = cancel_when_running(cluster, wf / "results/logs/evaluate_base_full.log", proc)
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    print(f"Slurm run: {time.monotonic() - started:.1f} s")
    log = out.read_text()
    jobs = {j["id"]: j for j in cluster.jobs()}

    # The cancelled job: Snakemake names it, with its Slurm job and state, and fails the run (the
    # others went on: --keep-going); the evaluation stopped on SIGTERM and wrote nothing.
    assert proc.returncode != 0, log[-3000:]
    assert jobs[cancelled]["state"] == "CANCELLED"
    assert (
        f"Error in rule {CANCELLED_RULE}" in log
        and f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in log
    ), log[-3000:]
    assert "stopped by SIGTERM" in (wf / "results/logs/evaluate_base_full.log").read_text()
    assert (
        not (wf / "results/eval/base_full.json").exists()
        and not (wf / "results/lineage/evaluate_base_full.json").exists()
    )
    assert [p for p in (wf / "results").rglob("*") if p.name.endswith(".tmp")] == []  # no half-written file or folder

    # Every other job ran as a Slurm job of its own, which completed: its entry names it.
    entries = [json.loads(p.read_text()) for p in sorted((wf / "results/lineage").glob("*.json"))]
    assert sorted(e["rule"] for e in entries) == [
        "build_base_model",
        "build_records",
        "clean_text",
        "convert_int4",
        "split_jsonl",
        "train_lora",
        "train_qlora",
    ]
    ids = [e["slurm"]["job_id"] for e in entries]
    assert len(set(ids)) == len(ids)
    for entry in entries:
        job = jobs[entry["slurm"]["job_id"]]
        assert (job["state"], job["comment"]) == ("COMPLETED", f"rule_{entry['rule']}"), entry["job"]
        assert entry["slurm"]["partition"] == slurm_cluster.PARTITION

    # The shared kernel cache reached the Slurm jobs: the run folder's, which every node sees
    run = json.loads((wf / "results/runs/train_qlora.json").read_text())
    assert run["mlx_environment"]["FARENSE_KERNEL_CACHE"] == str(wf.resolve() / ".snakemake/mlx-kernels")

    # What the rules declare reached Slurm: CPUs, memory, time limit, GPU.
    def requested(rule):
        job_id = next(e["slurm"]["job_id"] for e in entries if e["rule"] == rule)
        return cluster.run("scontrol", "show", "job", job_id).stdout

    assert "NumCPUs=4" in requested("clean_text") and "gpu" not in requested("clean_text")  # cleaning.threads
    training = requested("train_qlora")
    assert "TimeLimit=04:00:00" in training and "gres:gpu:1" in training and "MinMemoryNode=" in training

    # The same data and adapters as the local build.
    for path in SAME_AS_LOCAL:
        assert sha256(wf / path) == sha256(tiny_report / path), path
