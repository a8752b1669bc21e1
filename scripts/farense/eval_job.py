"""One evaluation job of the evaluate rule, described by plain data (paths and settings): a model
(the int4 base, the unquantized base, or either with its adapter) on the test split; its loss on
the splits, its answers to the test questions scored by their facts, its overfitting gap, and what
it costs on disk -> results/eval/<name>.json; its time, memory and speed -> the run record."""

from __future__ import annotations

import time
from pathlib import Path

from .artifact_checks import read_json
from .compute import prepare
from .evaluation import EvalOptions, answer_quality, overfitting_from_metrics, split_losses, test_questions
from .inference import load
from .model_files import weights_bytes
from .run_record import peak_memory_gb, write_run
from .textio import write_json_atomic


def run(job: dict, log, blas: str | None) -> None:
    """Evaluate what `job` describes: keys name, model, adapter (None: the base alone), evaluation
    and training (settings), data_format, test (the test split; valid and train beside it), schema
    (of their lines), summary and run (the output paths)."""
    import mlx.core as mx

    name = job["name"]
    options = EvalOptions.from_config(dict(job["evaluation"]))
    training = dict(job["training"])
    adapter = job["adapter"]
    model_path = job["model"]
    log.info("evaluating %s: model %s, adapter %s", name, model_path, adapter or "none")
    started = time.time()
    loaded = load(model_path, adapter)
    # float32 on a CPU (int4 values dequantized), dequantized once on a CUDA GPU where it fits, else native kernels
    loaded.model, compute_note = prepare(loaded.model, training["compute"], training=False)
    log.info("compute: %s (device %s)", compute_note, mx.default_device())
    mx.reset_peak_memory()
    splits = ("test", "valid", "train") if options.train_split_loss else ("test",)
    losses, loss_seconds = split_losses(
        loaded.model,
        loaded.tokenizer,
        Path(job["test"]).parent,
        job["data_format"],
        training["batch_size"],
        training["max_seq_length"],
        training["mask_prompt"],
        options.loss_batches,
        splits,
        options.seed,
        job["schema"],
    )
    log.info("test loss %.4f, perplexity %.3f", losses["test"]["loss"], losses["test"]["perplexity"])
    questions = test_questions(Path(job["test"]), job["data_format"], job["schema"])
    quality, speed = answer_quality(loaded.model, loaded.tokenizer, questions, options)
    log.info(
        "%d questions: fact accuracy %s, exact match %s, F1 %s; %s generated tokens/s in batches of %d",
        quality["questions"],
        quality["fact_accuracy"],
        quality["exact_match"],
        quality["f1"],
        speed["tokens_per_second"],
        options.batch_size,
    )

    training_summary, overfitting = {}, {}
    if adapter:
        training_summary = read_json(Path(adapter) / "training_summary.json", "training summary")
        overfitting = overfitting_from_metrics(Path(adapter) / "metrics.csv")
        overfitting["kept_step"] = training_summary["kept_step"]  # the adapter evaluated
        at_kept = [r for r in overfitting["per_step"] if r["step"] == training_summary["kept_step"]]
        overfitting["gap_at_kept_step"] = at_kept[0]["gap"] if at_kept else None
    if "train" in losses:
        # the kept adapter (or the base) on whole splits: the gap the user will live with
        overfitting["valid_minus_train_loss"] = round(losses["valid"]["loss"] - losses["train"]["loss"], 6)

    model_dir = Path(model_path)
    # What the model, data and settings decide (the same on every build); time and memory of this
    # run, and the generation speed, go to the run record, where the report reads them.
    summary = {
        "model": name,
        "base": model_path,
        "adapter": adapter,
        "loss": losses,
        "answers": quality,
        "overfitting": overfitting,
        "cost": {
            "model_bytes": weights_bytes(model_dir),
            "adapter_bytes": weights_bytes(Path(adapter)) if adapter else 0,
            "training_compute": training_summary.get("compute"),
        },
        "settings": {
            "evaluation": dict(job["evaluation"]),
            "batch_size": training["batch_size"],
            "max_seq_length": training["max_seq_length"],
            "mask_prompt": training["mask_prompt"],
            "data_format": job["data_format"],
        },
        "compute": compute_note,
        "device": str(mx.default_device()),
    }
    write_json_atomic(job["summary"], summary)
    write_run(
        job["run"],
        {
            "job": f"evaluate_{name}",
            "seconds": round(time.time() - started, 2),
            "loss_seconds": loss_seconds,
            "generation": speed,
            "peak_memory_gb": peak_memory_gb(),
        },
        blas,
    )
