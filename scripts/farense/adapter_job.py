"""One training job of train_qlora or train_lora, described by plain data (paths and settings),
so that the rule script runs it in its own process, or `training.processes` ranks run it side by
side (farense.distributed: mlx.launch starts `python -c ...main()` with the job's JSON file).

Every rank loads the model and the splits and trains its share of each batch (farense.training
averages the gradients); rank 0 alone writes the adapter, the checkpoints and the run record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from .errors import PipelineError
from .provenance import sha256_file as file_hash


def model_identity(model_dir: Path) -> str:
    """Config and weights of a model directory (a hub id: its name)."""
    if not model_dir.is_dir():
        return str(model_dir)
    files = sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]
    return hashlib.sha256("".join(file_hash(f) for f in files).encode()).hexdigest()


def run(job: dict, log, blas: str | None) -> None:
    """Train the adapter `job` describes: keys model, kind, train, valid, schema (of their lines),
    data_format, training (resolved options), adapter, checkpoints, run (the run record's path)."""
    import mlx.core as mx
    import mlx_lm
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import get_total_parameters
    from tqdm import tqdm

    from . import training as training_module
    from .artifact_checks import check_model_dir, load_model
    from .chat_templates import ensure_chat_template
    from .compute import folder_facts, prepare, route_for
    from .memory_presets import graph_settings
    from .run_record import peak_memory_gb, write_run
    from .split_lines import mlx_dataset
    from .textio import atomic_dir, write_json_atomic
    from .training import TrainOptions, fingerprint, lora_config, train

    settings = dict(job["training"])
    options = TrainOptions.from_config(
        settings, ignore=("memory", "compute")
    )  # the preset's name; the compute route (below)
    model_path = job["model"]
    log.info("BLAS: %s; memory preset %s; model %s", blas, settings.get("memory"), model_path)
    # float32 on a CPU, int4 dequantized once on a GPU with memory to spare, else just in time or
    # native kernels: decided from the folder's files before MLX queues any work, since just in time
    # needs smaller CUDA graphs (memory_presets.graph_settings), which MLX reads only then
    route = None
    if Path(model_path).is_dir():
        check_model_dir(model_path)  # a damaged model folder: one line naming the file
        route = route_for(settings["compute"], True, *folder_facts(model_path))
        for name, value in graph_settings(options.grad_checkpoint or route == "jit", sys.platform).items():
            os.environ.setdefault(name, value)
    world = mx.distributed.init()  # one process unless mlx.launch started ranks
    main_rank = world.rank() == 0
    model, tokenizer = load_model(model_path)
    if job["data_format"] == "chat":  # base models such as Mistral-7B-v0.1 ship no template; chat data needs one
        ensure_chat_template(tokenizer, model.model_type, log)
    model, compute_note = prepare(model, settings["compute"], training=True, route=route)
    log.info("compute: %s (device %s)", compute_note, mx.default_device())
    mask = options.mask_prompt and job["data_format"] != "text"
    # every line checked against the JSONL schema first (a line edited by hand: one line naming it)
    train_set, valid_set = (mlx_dataset(job[split], job["schema"], tokenizer, mask) for split in ("train", "valid"))
    layers = len(model.layers) if options.num_layers == -1 else options.num_layers
    if layers > len(model.layers):
        raise PipelineError(f"training.lora.num_layers is {layers} but the model has {len(model.layers)} layers")
    adapter_config = lora_config(options, layers)
    mx.random.seed(options.seed)  # the initial LoRA weights
    model.freeze()
    linear_to_lora_layers(model, layers, adapter_config["lora_parameters"])
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = get_total_parameters(model)  # counts packed int4 weights as the weights they hold
    log.info("trainable parameters: %d of %d (%.3f%%)", trainable, total, 100 * trainable / total)

    inputs = {
        "train": file_hash(Path(job["train"])),
        "valid": file_hash(Path(job["valid"])),
        "model": model_identity(Path(model_path)),
        "mask": str(mask),
        "compute": compute_note,
        # a checkpoint from other training code or library versions is not resumed
        "code": file_hash(Path(training_module.__file__)),
        "versions": f"mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}",
    }
    run_id = fingerprint(options, inputs)
    out = Path(job["adapter"])
    bar = tqdm(
        total=None, desc=f"training {out.name}", unit="step", file=sys.stderr, mininterval=1.0, disable=not main_rank
    )

    def progress(it, total_steps, loss):
        bar.total = total_steps
        bar.n = it
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.refresh()

    started = time.time()
    # Rank 0 writes the adapter folder whole or not at all (textio.atomic_dir: an error, or a
    # scheduler's SIGTERM through farense.runlog, leaves no half adapter); the other ranks train
    # beside it and write nothing.
    with atomic_dir(out) if main_rank else nullcontext(out.with_name(out.name + ".tmp")) as tmp:
        state, measured = train(
            model,
            CacheDataset(train_set),
            CacheDataset(valid_set),
            options,
            tmp,
            Path(job["checkpoints"]),
            run_id,
            progress,
        )
        bar.close()
        wall = time.time() - started
        if not main_rank:  # rank 0 writes the adapter, the checkpoints and the run record
            return
        config = {
            **adapter_config,
            "model": model_path,
            "base_model_kind": job["kind"],
            "training": asdict(options),
            "run": run_id,
        }
        write_json_atomic(tmp / "adapter_config.json", config)
        final = next((m for m in reversed(state.metrics) if m["train_loss"] is not None), {})
        # What the inputs decide: the same on every build of the same inputs (an adapter folder is
        # hashed by the lineage and by whoever receives it). How this run went (time, memory, a resume)
        # goes to the run record.
        summary = {
            "adapter": out.name,
            "run": run_id,
            "inputs": inputs,
            "model": model_path,
            "preset": settings.get("memory"),  # the memory preset's name (config/memory/)
            "compute": compute_note,
            "device": str(mx.default_device()),
            "iterations": state.iteration,
            "best_step": state.best_step,
            "keep": options.keep,
            "kept_step": state.iteration if options.keep == "last" else state.best_step,
            "best_val_loss": state.best_val_loss,
            "initial_val_loss": state.metrics[0]["val_loss"],
            "stopped_early": state.stopped_early,
            "trained_tokens": state.trained_tokens,
            "padding_share": round(state.padded_tokens / max(state.batch_tokens, 1), 4),
            "examples_left_out": state.skipped_examples,
            "final_train_loss": final.get("train_loss"),
            "trainable_parameters": trainable,
            "adapter_bytes": (tmp / "adapters.safetensors").stat().st_size,
        }
        write_json_atomic(tmp / "training_summary.json", summary)
    record = write_run(
        job["run"],
        {
            "job": f"train_{out.name}",
            "resumed_from": measured.resumed_from,
            "checkpoints_set_aside": measured.set_aside,
            "train_seconds": round(measured.seconds, 2),  # in the training step, this process
            "wall_seconds": round(wall, 2),  # training with its validations and checkpoints
            "trained_tokens": measured.tokens,
            "tokens_per_second": measured.tokens_per_second,
            "peak_memory_gb": peak_memory_gb(),
            "steps": measured.steps,
            "processes": world.size(),
        },
        blas,
    )
    log.info(
        "%s: best validation loss %.4f at step %d (step 0: %.4f); %d iterations, %.0f tokens/s, %.1f%% padding, peak %.3f GB",
        out.name,
        state.best_val_loss,
        state.best_step,
        summary["initial_val_loss"],
        state.iteration,
        record["tokens_per_second"] or 0,
        100 * summary["padding_share"],
        record["peak_memory_gb"],
    )


def main() -> None:
    """A rank's entry: `python -c "...; main()" JOB.json` (see farense.distributed)."""
    from .preload import blas  # first: the BLAS before mlx
    from .runlog import setup_logging

    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    import mlx.core as mx

    rank = mx.distributed.init().rank()
    # rank 0 logs to the job's log file; the others only to stderr, which the launcher gathers
    log = setup_logging(job["log"] if rank == 0 else None, append=True)  # after the rule script's lines
    if rank:
        log.setLevel(logging.WARNING)  # one copy of the progress lines, rank 0's
    try:
        run(job, log, blas)
    except PipelineError as err:
        log.error("rank %d: %s", rank, err)
        raise SystemExit(1) from None
