"""QLoRA/LoRA training with the real mlx-lm on the tiny test model: the recipe's extras, resume, interop."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, snakemake
from farense.memory_presets import (
    GIB,
    LOW_MEMORY_GRAPHS,
    graph_settings,
    graphs_bounded,
    pick_preset,
    preset_megabytes,
    resolve_training,
)

TINY = str(ROOT / "tests/config/tiny.yaml")
CONFIG = ("--configfile", "config/config.yaml", TINY)


@pytest.fixture(scope="module")
def trained(built_data):
    snakemake(built_data, "results/adapters/qlora", "results/adapters/lora", *CONFIG)
    return built_data


def load_adapter(path):
    import mlx.core as mx

    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


def test_training_improves_validation_loss_and_writes_what_users_read(trained):
    for name in ("qlora", "lora"):
        out = trained / "results/adapters" / name
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["best_val_loss"] < summary["initial_val_loss"]
        # tiny.yaml: 0.5 epochs of batch 2, accumulation 2, over the training examples that fit 128 tokens
        at_most = round(0.5 * (sum(1 for _ in open(trained / "results/data/train.jsonl")) // 2))
        assert summary["iterations"] % 2 == 0 and 40 <= summary["iterations"] <= at_most
        assert 0 <= summary["padding_share"] < 1 and summary["trained_tokens"] > 0
        metrics = pd.read_csv(out / "metrics.csv")
        assert list(metrics.columns) == ["step", "epoch", "train_loss", "val_loss", "learning_rate", "padding_share"]
        # speed and memory: in the run record, at the steps of the metrics rows after step 0
        run = json.loads((trained / f"results/runs/train_{name}.json").read_text())
        assert run["tokens_per_second"] > 0 and run["peak_memory_gb"] > 0 and run["train_seconds"] > 0 and run["blas"]
        assert run["trained_tokens"] == summary["trained_tokens"] and run["resumed_from"] is None
        assert [s["step"] for s in run["steps"]] == list(metrics["step"])[1:] and all(
            s["peak_memory_gb"] > 0 for s in run["steps"]
        )
        evals = metrics.dropna(subset=["val_loss"])
        assert summary["best_step"] == int(evals.loc[evals["val_loss"].idxmin(), "step"])
        config = json.loads((out / "adapter_config.json").read_text())
        # alpha 16 and rank 8 become mlx-lm's scale 2.0
        assert config["lora_parameters"] == {
            "rank": 8,
            "scale": 2.0,
            "dropout": 0.0,
            "keys": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        }
        # warmup: the learning rate climbs for 5 updates (10 iterations), then decays
        assert (
            metrics["learning_rate"].iloc[2] > metrics["learning_rate"].iloc[1]
            and metrics["learning_rate"].iloc[-1] < metrics["learning_rate"].max()
        )
    assert json.loads((trained / "results/adapters/qlora/training_summary.json").read_text())["model"].endswith(
        "base-int4"
    )


def test_mlx_lm_loads_the_adapter_generates_and_tests(trained):
    code = (
        "import mlx_lm\n"
        "model, tok = mlx_lm.load('results/models/base-int4', adapter_path='results/adapters/qlora')\n"
        "prompt = tok.apply_chat_template([{'role': 'user', 'content': 'Quem foi Hassan Nader?'}], add_generation_prompt=True)\n"
        "print(repr(mlx_lm.generate(model, tok, prompt=prompt, max_tokens=8)))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=trained, check=True, capture_output=True, text=True)
    test = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "lora",
            "--model",
            "results/models/base-int4",
            "--adapter-path",
            "results/adapters/qlora",
            "--data",
            "results/data",
            "--test",
            "--test-batches",
            "5",
        ],  # MLX's int4 kernels are slow on a CPU: a few batches show that it loads and tests
        cwd=trained,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Test loss" in test.stdout + test.stderr


def test_early_stopping_keeps_the_best_adapter(trained):
    # No validation can beat the best by 10 nats: training stops at the first validation after step 0
    # with patience 1, and the adapter kept is the one of step 0.
    snakemake(
        trained,
        "results/adapters/qlora",
        *CONFIG,
        "--config",
        'training={"early_stopping": {"patience": 1, "min_delta": 10.0}}',
    )
    summary = json.loads((trained / "results/adapters/qlora/training_summary.json").read_text())
    assert summary["stopped_early"] and summary["iterations"] == 10 and summary["best_step"] == 0
    adapter = load_adapter(trained / "results/adapters/qlora/adapters.safetensors")
    assert all(not v.any() for k, v in adapter.items() if k.endswith("lora_b"))  # LoRA starts at zero


def test_keep_last_writes_the_final_adapter_whatever_the_validation_loss(trained):
    # As above no validation counts as an improvement, so the best stays step 0; keep: last writes
    # the final iteration's adapter all the same, and the summary and the model card say so.
    snakemake(
        trained,
        "results/adapters/qlora",
        *CONFIG,
        "--config",
        'training={"keep": "last", "early_stopping": {"patience": 0, "min_delta": 10.0}}',
    )
    out = trained / "results/adapters/qlora"
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["best_step"] == 0 and not summary["stopped_early"]
    assert summary["keep"] == "last" and summary["kept_step"] == summary["iterations"] >= 40
    adapter = load_adapter(out / "adapters.safetensors")
    assert all(v.any() for k, v in adapter.items() if k.endswith("lora_b"))  # trained, not step 0's zeros
    best = load_adapter(out.parent.parent / "checkpoints/qlora/best.safetensors")
    assert all(not v.any() for k, v in best.items() if k.endswith("lora_b"))


def test_divergence_watchdog_names_the_step(trained):
    proc = snakemake(
        trained,
        "results/adapters/qlora",
        *CONFIG,
        "--config",
        'training={"learning_rate": 1e30, "warmup_steps": 0}',
        check=False,
    )
    assert proc.returncode != 0
    assert "training diverged at step" in proc.stdout and "lower training.learning_rate" in proc.stdout
    assert (trained / "results/checkpoints/qlora/best.safetensors").exists()
    assert not (trained / "results/adapters/qlora").exists()


def test_resume_after_a_kill_ends_at_the_same_adapter(trained):
    # the tiny config's 0.5 epochs: 152 steps here, killed once a checkpoint of step 40 or later is
    # written (2 epochs, 608 steps, made this test take 94 s instead of 35 s)
    options = ("--config", 'training={"checkpoint_every": 20}')
    shutil.rmtree(trained / "results/checkpoints/qlora", ignore_errors=True)
    snakemake(trained, "results/adapters/qlora", *CONFIG, *options, "--forcerun", "train_qlora")
    reference = load_adapter(trained / "results/adapters/qlora/adapters.safetensors")
    uninterrupted = json.loads((trained / "results/adapters/qlora/training_summary.json").read_text())
    assert json.loads((trained / "results/runs/train_qlora.json").read_text())["resumed_from"] is None

    shutil.rmtree(trained / "results/checkpoints/qlora")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "1",
        "results/adapters/qlora",
        *CONFIG,
        *options,
        "--forcerun",
        "train_qlora",
    ]
    proc = subprocess.Popen(
        cmd, cwd=trained, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    state = trained / "results/checkpoints/qlora/last/state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["iteration"] >= 40:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["iteration"]
    assert killed_at >= 40

    # What a user does after a kill (README): run the same target again; no --unlock.
    snakemake(trained, "results/adapters/qlora", *CONFIG, *options)
    summary = json.loads((trained / "results/adapters/qlora/training_summary.json").read_text())
    run = json.loads((trained / "results/runs/train_qlora.json").read_text())  # how the run went: resumed
    assert run["resumed_from"] == killed_at and summary["iterations"] == uninterrupted["iterations"] > killed_at
    # what it made: the same summary as the uninterrupted run's (the adapter within 1e-5, below)
    assert (
        summary["best_step"] == uninterrupted["best_step"]
        and summary["trained_tokens"] == uninterrupted["trained_tokens"]
    )
    assert run["trained_tokens"] < summary["trained_tokens"]  # this run trained only the steps after the checkpoint
    resumed = load_adapter(trained / "results/adapters/qlora/adapters.safetensors")
    assert resumed.keys() == reference.keys()
    assert max(float(np.abs(resumed[k] - reference[k]).max()) for k in reference) < 1e-5


def test_learning_rate_change_reruns_training_only(trained):
    jobs = snakemake(
        trained,
        "-n",
        "results/adapters/qlora",
        "results/adapters/lora",
        *CONFIG,
        "--config",
        'training={"learning_rate": 0.003}',
    ).stdout
    table = jobs.split("Job stats:")[1].split("total")[0]
    assert "train_qlora" in table and "train_lora" in table
    for upstream in ("clean_text", "build_records", "split_jsonl", "build_base_model", "convert_int4"):
        assert upstream not in table


@pytest.mark.parametrize(
    "memory, preset", [(8 * GIB, "8gb"), (16 * GIB, "16gb"), (24 * GIB, "16gb"), (64 * GIB, "32gb")]
)
def test_auto_memory_preset_follows_memory(memory, preset):
    assert pick_preset(memory) == preset
    assert preset_megabytes(preset) == int(preset[:-2]) * 1024


def test_memory_bound_training_on_linux_asks_for_smaller_cuda_graphs():
    import yaml

    training = yaml.safe_load((ROOT / "config/config.yaml").read_text())["training"]
    presets = ROOT / "config/memory"
    eight, sixteen = (resolve_training(dict(training, memory=m), presets) for m in ("8gb", "16gb"))
    assert eight["grad_checkpoint"] and not sixteen["grad_checkpoint"]
    assert graph_settings(True, "linux") == {"MLX_MAX_OPS_PER_BUFFER": "4", "MLX_MAX_MB_PER_BUFFER": "50"}
    assert graph_settings(True, "darwin") == {} and graph_settings(False, "linux") == {}
    # what train() reads back: a value set by hand before the run wins, and may be larger
    assert graphs_bounded(LOW_MEMORY_GRAPHS) and graphs_bounded(
        {"MLX_MAX_OPS_PER_BUFFER": "2", "MLX_MAX_MB_PER_BUFFER": "8"}
    )
    assert not graphs_bounded({}) and not graphs_bounded(dict(LOW_MEMORY_GRAPHS, MLX_MAX_MB_PER_BUFFER="1000"))
    assert not graphs_bounded(dict(LOW_MEMORY_GRAPHS, MLX_MAX_OPS_PER_BUFFER="x"))


def test_the_run_record_names_the_graph_settings_the_8gb_preset_set(trained, tmp_path):
    # a copy: the other tests of this module read the trained tree's default-preset outputs
    wf = shutil.copytree(trained, tmp_path / "wf", symlinks=True)
    snakemake(wf, "results/adapters/qlora", *CONFIG, "--config", 'training={"memory": "8gb"}')
    run = json.loads((wf / "results/runs/train_qlora.json").read_text())
    expected = LOW_MEMORY_GRAPHS if sys.platform == "linux" else {}
    assert {
        k: v for k, v in run["mlx_environment"].items() if k in ("MLX_MAX_OPS_PER_BUFFER", "MLX_MAX_MB_PER_BUFFER")
    } == expected
    summary = json.loads((wf / "results/adapters/qlora/training_summary.json").read_text())
    assert summary["preset"] == "8gb"
    # the shared kernel cache is handed to every job, as an absolute path (farense.kernel_cache);
    # on a CPU, MLX's own cache setting is left as it was
    assert run["mlx_environment"]["FARENSE_KERNEL_CACHE"] == str(wf.resolve() / ".snakemake/mlx-kernels")
    assert run["mlx_environment"].get("MLX_PTX_CACHE_DIR") == os.environ.get("MLX_PTX_CACHE_DIR")


def test_a_job_that_trains_just_in_time_asks_for_the_small_graphs_itself(trained, tmp_path):
    # compute: jit without checkpointing (the tiny config's preset): the route is decided from the
    # model folder before MLX queues work, and the job sets the graphs that bound the queue (1.13)
    wf = shutil.copytree(trained, tmp_path / "wf", symlinks=True)
    snakemake(wf, "results/adapters/qlora", *CONFIG, "--config", 'training={"compute": "jit"}')
    graphs = ("MLX_MAX_OPS_PER_BUFFER", "MLX_MAX_MB_PER_BUFFER")
    run = json.loads((wf / "results/runs/train_qlora.json").read_text())
    summary = json.loads((wf / "results/adapters/qlora/training_summary.json").read_text())
    assert summary["compute"].startswith("int4 weights dequantized just in time")
    assert {k: v for k, v in run["mlx_environment"].items() if k in graphs} == (
        LOW_MEMORY_GRAPHS if sys.platform == "linux" else {}
    )
    # the default route on this CPU (float32) and the LoRA baseline leave MLX's graphs as they are
    for job in ("train_qlora", "train_lora"):
        default = json.loads((trained / f"results/runs/{job}.json").read_text())
        assert not set(graphs) & set(default["mlx_environment"])


def test_the_queued_memory_limit_is_the_memory_in_use_plus_the_margin_and_never_raised():
    import mlx.core as mx

    from farense.training import JIT_MARGIN_BYTES, LOW_MEMORY_MARGIN_BYTES, limit_queued_memory, queue_margin

    assert LOW_MEMORY_MARGIN_BYTES < JIT_MARGIN_BYTES  # the 8gb preset's tighter queue (BENCHMARKS.md 1.12)
    assert queue_margin(True, False) == queue_margin(True, True) == LOW_MEMORY_MARGIN_BYTES
    # just in time: small CUDA graphs bound the queue themselves (1.13), else the 1 GB margin
    assert queue_margin(False, True) is None and queue_margin(False, False) == JIT_MARGIN_BYTES
    previous = mx.get_memory_limit()
    weights = mx.zeros((4096, 1024))  # 16 MB in use
    mx.eval(weights)
    try:
        limit_queued_memory(LOW_MEMORY_MARGIN_BYTES)
        assert mx.get_memory_limit() == mx.get_active_memory() + LOW_MEMORY_MARGIN_BYTES
        lowered = mx.get_memory_limit()
        limit_queued_memory(JIT_MARGIN_BYTES)  # a larger margin does not raise it again
        assert mx.get_memory_limit() == lowered
    finally:
        mx.set_memory_limit(previous)


def test_memory_presets_and_overrides():
    import yaml

    training = yaml.safe_load((ROOT / "config/config.yaml").read_text())["training"]
    presets = ROOT / "config/memory"
    eight = resolve_training(dict(training, memory="auto"), presets, memory_bytes=8 * GIB)
    assert eight["memory"] == "auto -> 8gb"
    assert (eight["batch_size"], eight["grad_accumulation"], eight["max_seq_length"], eight["grad_checkpoint"]) == (
        1,
        2,
        256,
        True,
    )
    big = resolve_training(dict(training, memory="32gb", max_seq_length=2048), presets)
    assert (big["batch_size"], big["grad_accumulation"], big["max_seq_length"]) == (4, 1, 2048)
    default = resolve_training(training, presets)
    assert (
        default["batch_size"],
        default["grad_accumulation"],
        default["max_seq_length"],
        default["learning_rate"],
        default["warmup_steps"],
    ) == (2, 2, 512, 0.0002, 100)


def test_a_model_directory_named_in_the_config_is_used_as_the_base(trained, tmp_path):
    # The path a real model takes (Mistral-7B-v0.1 from a local folder): no tiny base is built,
    # the folder is converted and trained on as it is.
    model_dir = tmp_path / "meu-modelo"
    shutil.copytree(trained / "results/models/base", model_dir)
    (model_dir / "chat_template.jinja").unlink()  # as Mistral-7B-v0.1, which ships no chat template
    other = ("--config", f'model={{"base": "{model_dir}"}}')
    jobs = snakemake(trained, "-n", "results/adapters/qlora", "results/adapters/lora", *CONFIG, *other).stdout
    assert "build_base_model" not in jobs and "convert_int4" in jobs
    snakemake(trained, "results/adapters/qlora", "results/adapters/lora", *CONFIG, *other)
    conversion = json.loads((trained / "results/models/conversion.json").read_text())
    assert conversion["base"]["path"] == str(model_dir)
    assert "[INST]" in (trained / "results/models/base-int4/chat_template.jinja").read_text()  # added by the pipeline
    for name in ("qlora", "lora"):
        summary = json.loads((trained / f"results/adapters/{name}/training_summary.json").read_text())
        assert summary["best_val_loss"] < summary["initial_val_loss"]
    assert json.loads((trained / "results/adapters/lora/training_summary.json").read_text())["model"] == str(model_dir)


def test_examples_without_an_answer_in_the_window_are_left_out():
    from farense.training import LengthBatches, with_targets_in_window

    examples = [([1] * 10, 3), ([1] * 300, 200), ([1] * 300, 20), ([1] * 50, 49), ([1] * 6, 0)]
    kept, left_out = with_targets_in_window(examples, max_seq_length=128)
    assert left_out == 2 and [len(t) for t, _ in kept] == [10, 300, 6]
    # batches are cut from the examples sorted by tokenized length
    batches = LengthBatches(kept, batch_size=2, max_seq_length=128, seed=0)
    assert [sorted(len(kept[i][0]) for i in b) for b in batches.batches] == [[6, 10]]
