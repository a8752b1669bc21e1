"""A build killed with SIGKILL at any moment: running the same command again finishes it, with the
same data and adapters as an uninterrupted build (tests/kill_sweep.py; the benchmark
tests/benchmarks/bench_kill_sweep.py tries many more moments)."""

import os
import subprocess
import sys

import pytest

import kill_sweep
from conftest import ROOT, copy_workflow

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))
# The evaluations hold two thirds of the tiny build's time (50 of 80 s here) and no kill point of
# this test: 4 questions of 4 tokens keep the stages running while the test stays short (CI's
# budget). The data and adapters do not depend on these keys, so tiny_report's are the
# uninterrupted reference.
LIGHT_EVALUATION = (
    "--config",
    'evaluation={"max_questions": 4, "max_new_tokens": 4, "loss_batches": 1, '
    '"train_split_loss": false, "bootstrap_samples": 100}',
)
# One kill in each kind of moment the issue names, in the order a build meets them: each run is
# the recovery of the kill before, killed in turn; the last one runs to the end.
CHAIN = (
    "build_records: writing records.parquet",
    "train_lora: outputs just written",  # the case that stopped with IncompleteFilesException
    "lineage: the lineage being gathered",
)


def test_kills_during_a_build_and_the_same_command_recovers(tiny_report, tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    args = (*TINY, *LIGHT_EVALUATION)
    for name in CHAIN:
        kill = kill_sweep.run_and_kill(
            wf, args, name, when=kill_sweep.EVENTS[name], log=tmp_path / f"{len(os.listdir(tmp_path))}.log"
        )
        assert kill.killed and not kill.build_failed, f"{name}: {kill}"
    recovery = kill_sweep.recover(wf, args)
    assert "removed the lock files of a Snakemake run that was killed" in recovery.stdout
    assert kill_sweep.check(wf, tiny_report, recovery) == []


@pytest.mark.parametrize("take", ["release_stale_locks", "hold"])
def test_stale_locks_go_only_when_no_snakemake_of_the_workflow_is_alive(tmp_path, take):
    from farense import stale_locks

    locks = tmp_path / stale_locks.LOCKS
    # A live Snakemake (a process that took its hold the way the Snakefile does, then locked), or a
    # job's process that outlived its Snakemake (runlog.stage takes the hold), keeps them.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from farense.stale_locks import {take}; "
            f"{take}(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=ROOT / "scripts",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        locks.mkdir(parents=True)
        (locks / "0.input.lock").write_text("results/data/train.jsonl\n")
        code = (
            "import sys; from farense.stale_locks import release_stale_locks; print(release_stale_locks(sys.argv[1]))"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=ROOT / "scripts",
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == "[]" and (locks / "0.input.lock").exists()
    finally:
        holder.kill()
        holder.wait()
    # Once it is dead (killed: nothing of it ran to clean up), the next start removes them.
    after = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT / "scripts", capture_output=True, text=True, check=True
    )
    assert after.stdout.strip() == "['0.input.lock']" and not locks.exists()


def test_a_kill_between_the_renames_of_a_checkpoint_leaves_one_to_resume_from(tmp_path, monkeypatch):
    import mlx.nn as nn
    import mlx.optimizers as optim
    from dataclasses import asdict
    from pathlib import Path

    from farense import checkpoints, training

    model = nn.Linear(4, 4)
    optimizer = optim.Adam(learning_rate=1e-3)
    optimizer.init(model.trainable_parameters())

    def save(iteration):
        checkpoints.save(tmp_path, model, optimizer, {"run": "run", **asdict(training.RunState(iteration=iteration))})

    def resumed():
        return checkpoints.resume(tmp_path, model, optimizer, "run", lambda c: training.RunState(**c)).counters[
            "iteration"
        ]

    training._save_best(model, tmp_path / "best.safetensors")
    save(10)

    # The next save is killed after `last` became `previous`, before `last.tmp` became `last`.
    rename = Path.rename

    def killed_at_the_second_rename(self, target):
        if self.name == "last.tmp":
            raise KeyboardInterrupt("killed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save(20)
    monkeypatch.undo()
    assert not (tmp_path / "last").exists() and (tmp_path / "previous" / "state.json").exists()
    assert resumed() == 10  # the whole one before

    # The next save puts a whole checkpoint in place and clears what the kill left.
    save(20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "last", "previous"]
    assert resumed() == 20


def test_what_a_killed_write_leaves_is_found_by_its_output_name(tmp_path):
    from farense.textio import atomic_path, leftovers, remove_leftovers

    out = tmp_path / "train.jsonl"
    left = [tmp_path / ".train.jsonl.abc.tmp", tmp_path / ".train.jsonl.scratch.x1", tmp_path / "train.jsonl.tmp"]
    others = [tmp_path / "valid.jsonl", tmp_path / ".valid.jsonl.abc.tmp", tmp_path / "train.jsonl.bak"]
    for p in left[:1] + left[2:] + others:
        p.write_text("x")
    left[1].mkdir()
    (left[1] / "part-0.parquet").write_text("x")
    assert leftovers(out) == sorted(left)
    assert remove_leftovers(out) == sorted(left)
    assert sorted(tmp_path.iterdir()) == sorted(others)
    with atomic_path(out) as tmp:
        tmp.write_text("whole\n")
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's private 0600


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
