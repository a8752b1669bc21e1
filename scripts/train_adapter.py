"""Rule script for train_qlora and train_lora: LoRA adapters on the int4 or the fp16 base."""

from farense.fastblas import use_fast_blas

blas = use_fast_blas()  # before mlx is imported

import hashlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import mlx.core as mx  # noqa: E402
import mlx_lm  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402
from mlx_lm.utils import get_total_parameters  # noqa: E402
from tqdm import tqdm  # noqa: E402

from farense.compute import prepare  # noqa: E402
from farense.errors import PipelineError  # noqa: E402
from farense.lineage import sha256_file as file_hash  # noqa: E402
from farense.runlog import stage  # noqa: E402
from farense.textio import atomic_dir, write_json_atomic  # noqa: E402
from farense.chat_templates import ensure_chat_template  # noqa: E402
from farense import training as training_module  # noqa: E402
from farense.training import TrainOptions, fingerprint, lora_config, train  # noqa: E402

smk = snakemake  # noqa: F821 (injected by Snakemake)


def model_identity(model_dir: Path) -> str:
    """Config and weights of a model directory (a hub id: its name)."""
    if not model_dir.is_dir():
        return str(model_dir)
    files = sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]
    return hashlib.sha256("".join(file_hash(f) for f in files).encode()).hexdigest()


with stage(smk) as log:
    settings = dict(smk.params.training)
    options = TrainOptions.from_config(settings)
    model_path = smk.params.model
    data_dir = Path(smk.input.train).parent
    log.info("BLAS: %s; memory preset %s; model %s", blas, settings.get("memory"), model_path)
    model, tokenizer = mlx_lm.load(model_path)
    if smk.params.data_format == "chat":  # base models such as Mistral-7B-v0.1 ship no template; chat data needs one
        ensure_chat_template(tokenizer, model.model_type, log)
    # float32 on a CPU, int4 dequantized once on a GPU with memory to spare, else native kernels
    model, compute_note = prepare(model, settings["compute"], training=True)
    log.info("compute: %s (device %s)", compute_note, mx.default_device())
    mask = options.mask_prompt and smk.params.data_format != "text"
    train_set, valid_set, _ = load_local_dataset(data_dir, tokenizer, types.SimpleNamespace(mask_prompt=mask))
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
        "train": file_hash(Path(smk.input.train)),
        "valid": file_hash(Path(smk.input.valid)),
        "model": model_identity(Path(model_path)),
        "mask": str(mask),
        "compute": compute_note,
        # a checkpoint from other training code or library versions is not resumed
        "code": file_hash(Path(training_module.__file__)),
        "versions": f"mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}",
    }
    run_id = fingerprint(options, inputs)
    out = Path(smk.output.adapter)
    bar = tqdm(total=None, desc=f"training {out.name}", unit="step", file=sys.stderr, mininterval=1.0)

    def progress(it, total_steps, loss):
        bar.total = total_steps
        bar.n = it
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.refresh()

    started = time.time()
    # whole or not at all: a failure, or a scheduler's SIGTERM (farense.runlog), removes the folder
    with atomic_dir(out) as tmp:
        state = train(model, CacheDataset(train_set), CacheDataset(valid_set), options, tmp, Path(smk.params.checkpoints), run_id, progress)
        bar.close()
        wall = time.time() - started
        config = {**adapter_config, "model": model_path, "base_model_kind": smk.params.kind, "training": asdict(options), "run": run_id}
        write_json_atomic(tmp / "adapter_config.json", config)
        final = next((m for m in reversed(state.metrics) if m["train_loss"] is not None), {})
        summary = {
            "adapter": out.name,
            "run": run_id,
            "inputs": inputs,
            "model": model_path,
            "memory": settings.get("memory"),
            "compute": compute_note,
            "device": str(mx.default_device()),
            "blas": blas,
            "platform": platform.platform(),
            "iterations": state.iteration,
            "best_step": state.best_step,
            "best_val_loss": state.best_val_loss,
            "initial_val_loss": state.metrics[0]["val_loss"],
            "stopped_early": state.stopped_early,
            "resumed_from": state.resumed_from,
            "trained_tokens": state.trained_tokens,
            "train_seconds": round(state.train_seconds, 2),
            "wall_seconds": round(wall, 2),
            "tokens_per_second": round(state.trained_tokens / state.train_seconds, 1) if state.train_seconds else None,
            "padding_share": round(state.padded_tokens / max(state.batch_tokens, 1), 4),
            "examples_left_out": state.skipped_examples,
            "peak_memory_gb": round(mx.get_peak_memory() / 1e9, 4),
            "final_train_loss": final.get("train_loss"),
            "trainable_parameters": trainable,
            "adapter_bytes": (tmp / "adapters.safetensors").stat().st_size,
        }
        write_json_atomic(tmp / "training_summary.json", summary)
    log.info(
        "%s: best validation loss %.4f at step %d (step 0: %.4f); %d iterations, %.0f tokens/s, %.1f%% padding, peak %.3f GB",
        out.name, state.best_val_loss, state.best_step, summary["initial_val_loss"], state.iteration,
        summary["tokens_per_second"] or 0, 100 * summary["padding_share"], summary["peak_memory_gb"],
    )
