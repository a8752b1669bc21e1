"""Benchmark of LoRA/QLoRA training at real scale: the Mistral-7B shape on a GPU (MLX CUDA/Metal).

    python tests/benchmarks/bench_gpu_training.py --routes int4 int4-bf16 bf16 \
        --configs 2x512 4x512 8x1024 --checkpoint off on --json results.jsonl
    python tests/benchmarks/bench_gpu_training.py --agreement 10
    python tests/benchmarks/bench_gpu_training.py --shape tiny ...   # a smoke test on a CPU

The model is mlx-lm's own llama/mistral Model class with the Mistral-7B-v0.1 shape (hidden 4096,
32 layers, 32 heads, 8 KV heads, intermediate 14336, vocabulary 32000) and random weights (no
download): built in bfloat16, quantized with mlx's nn.quantize (4 bits, group size 64) for the
int4 routes. LoRA rank 8 (scale 2.0 = alpha 16 / rank 8) on q/k/v of all layers, made by mlx-lm's
linear_to_lora_layers with the pipeline's lora_config. The step timed is the pipeline's own:
farense.training.make_step (mlx-lm's default_loss, value_and_grad, the compiled step with gradient
accumulation; Adam on the pipeline's learning-rate schedule), evaluated after each call exactly as
farense.training.train does. Gradient checkpointing is mlx-lm's grad_checkpoint, as in train().

Routes (--routes):
  int4       QLoRA with MLX's int4 kernels (quantized_matmul): the pipeline's choice on a GPU so far
  int4-bf16  QLoRA against the int4 weights dequantized once to bfloat16 (the very values the int4
             model holds, in a bf16 model: the memory of a bf16 model)
  int4-jit   int4 weights kept, each layer's weight dequantized just in time for its product, in
             the forward pass and again in the backward (farense.jit_dequant: training.compute jit)
  int4-otf   int4 weights kept, dequantized to bfloat16 inside each layer's forward and the product
             done in bf16 with autodiff's own backward (an experiment: autodiff keeps the weights)
  bf16       LoRA on a bfloat16 base (no quantization)
  int4-f32   the int4 weights dequantized once to float32 (the pipeline's route on a CPU)

With checkpointing, and on route int4-jit, MLX's memory limit is lowered as train() does
(farense.training.queue_margin: the active memory plus 0.75 GB with checkpointing; without, none
where CUDA's graphs are the pipeline's small ones, else 1 GB; so that eval waits for queued GPU
work instead of holding its buffers); --limit off leaves it as it was, --limit on off measures
both. MLX reads its graph settings once per process: run the pipeline's with
MLX_MAX_OPS_PER_BUFFER=4 MLX_MAX_MB_PER_BUFFER=50 (farense.memory_presets.LOW_MEMORY_GRAPHS).
A config BATCHxLENGTHxN accumulates gradients over N batches as train() does with
training.grad_accumulation.

--probe VARIANT...: peak memory of pieces of the step (forward, value_and_grad, the step eager or
compiled, under a memory limit, without the allocator cache) for --probe-configs, int4 route with
checkpointing; see memory_probe.

Each (route, batch x length, checkpointing) runs --warmup steps (compilation) then --steps timed
steps on random token batches of exactly that length (the model sees `length` tokens; tokens/s
counts the loss's tokens, batch x length, as the pipeline does). Peak memory is
mx.get_peak_memory() over the config's steps, after a reset with the model and adapters loaded
(so it includes the weights); "timed GB" is the peak over the timed steps only, after a second
reset at the end of the warm-up. Not part of the test suite: figures, not pass/fail.

--agreement N: the same LoRA initialisation and the same N batches trained with routes int4,
int4-bf16 and int4-f32 (constant learning rate 2e-4, no warmup, so that the adapters move): the
loss of the first batch under each, the losses along the way, and per pair the largest absolute
difference of the LoRA weights after N steps and the relative difference of the updates
(||delta_a - delta_b|| / ||delta_b||); int4-f32 is the reference (the same values, float32 math).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from farense.fastblas import use_fast_blas  # noqa: E402

BLAS = use_fast_blas()  # before mlx; matters on a CPU only

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
import mlx_lm  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.models.llama import Model, ModelArgs  # noqa: E402
from mlx_lm.tuner.trainer import default_loss, grad_checkpoint  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402
from mlx_lm.utils import dequantize_model, get_total_parameters  # noqa: E402

from farense.compute import compute_route, cuda_available  # noqa: E402
from farense.jit_dequant import use_jit_dequant  # noqa: E402
from farense.training import (  # noqa: E402
    TrainOptions,
    limit_queued_memory,
    lora_config,
    make_step,
    queue_margin,
    small_cuda_graphs,
    schedule,
)

SHAPES = {
    "mistral-7b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
    ),
    "tiny": dict(
        hidden_size=256,
        num_hidden_layers=4,
        intermediate_size=512,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1024,
    ),
}
ROUTES = ("int4", "int4-bf16", "int4-jit", "int4-otf", "bf16", "int4-f32")
OPTIONS = TrainOptions()  # the pipeline's defaults: rank 8, alpha 16, q/k/v, lr 2e-4, warmup 100, cosine


class OnTheFlyLinear(nn.QuantizedLinear):
    """int4 storage; each call dequantizes the weight and multiplies in the activations' dtype."""

    def __call__(self, x):
        w = mx.dequantize(
            self["weight"], self["scales"], self.get("biases"), self.group_size, self.bits, mode=self.mode
        )
        y = x @ w.astype(x.dtype).T
        if "bias" in self:
            y = y + self["bias"]
        return y


def build(shape: str, route: str, seed: int = 0, lora: bool = True) -> nn.Module:
    """The random-weight model of `route`, frozen, with LoRA layers unless `lora` is false
    (the same values for a seed)."""
    args = ModelArgs(
        model_type="mistral",
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        **SHAPES[shape],
    )
    mx.random.seed(seed)
    model = Model(args)
    model.set_dtype(mx.bfloat16)
    for layer in model.layers:  # one block at a time: float32 initial values stay transient
        mx.eval(layer.parameters())
    mx.eval(model.parameters())
    if route != "bf16":
        nn.quantize(model, group_size=64, bits=4)
        for layer in model.layers:
            mx.eval(layer.parameters())
        mx.eval(model.parameters())
        if route in ("int4-bf16", "int4-f32"):
            model = dequantize_model(model)
            if route == "int4-f32":
                model.set_dtype(mx.float32)
            mx.eval(model.parameters())
        elif route == "int4-jit":
            use_jit_dequant(model)
        elif route == "int4-otf":
            for _, module in model.named_modules():
                if type(module) is nn.QuantizedLinear:
                    module.__class__ = OnTheFlyLinear
    model.freeze()
    if lora:
        layers = len(model.layers)
        mx.random.seed(seed + 1)  # the LoRA initialisation
        linear_to_lora_layers(model, layers, lora_config(OPTIONS, layers)["lora_parameters"])
    mx.eval(model.parameters())
    gc.collect()
    mx.clear_cache()
    return model


def batches(vocab: int, batch: int, length: int, n: int, seed: int):
    mx.random.seed(seed)
    data = [mx.random.randint(0, vocab, (batch, length + 1)).astype(mx.int32) for _ in range(n)]
    lengths = mx.array([[0, length]] * batch, dtype=mx.int32)
    mx.eval(data, lengths)
    return data, lengths


def time_config(
    model,
    vocab: int,
    batch: int,
    length: int,
    checkpoint: bool,
    warmup: int,
    steps: int,
    limit: bool = True,
    accumulation: int = 1,
    jit: bool = False,
    margin_gb: float | None = None,
) -> dict:
    block = type(model.layers[0])
    original = block.__call__
    previous_limit = mx.get_memory_limit()
    try:
        optimizer = optim.Adam(learning_rate=schedule(OPTIONS, 1000))
        optimizer.init(model.trainable_parameters())
        if checkpoint:  # what train() does with training.grad_checkpoint
            grad_checkpoint(model.layers[0])
        margin = queue_margin(checkpoint, small_cuda_graphs()) if margin_gb is None else int(margin_gb * 1e9)
        if limit and (checkpoint or jit) and margin is not None:
            limit_queued_memory(margin)
        step, state = make_step(model, optimizer, accumulation)
        model.train()
        data, lengths = batches(vocab, batch, length, 4, seed=batch * 100_003 + length)
        gc.collect()
        mx.clear_cache()
        mx.reset_peak_memory()
        times, tokens, first, warm_peak, accumulated = [], 0, None, 0, None
        memory_limit = mx.get_memory_limit()
        for i in range(warmup + steps):
            tic = time.perf_counter()
            loss, ntoks, accumulated = step(data[i % len(data)], lengths, accumulated, (i + 1) % accumulation == 0)
            mx.eval(state, loss, accumulated)
            seconds = time.perf_counter() - tic
            if i == 0:
                first = seconds
            if i == warmup - 1:
                warm_peak = mx.get_peak_memory()
                mx.reset_peak_memory()
            if i >= warmup:
                times.append(seconds)
                tokens += int(ntoks.item())
        loss_value = loss.item()
        return {
            "tokens_per_second": tokens / sum(times),
            "median_step_s": statistics.median(times),
            "min_step_s": min(times),
            "max_step_s": max(times),
            "first_step_s": first,
            "peak_memory_gb": max(warm_peak, mx.get_peak_memory()) / 1e9,
            "steady_peak_gb": mx.get_peak_memory() / 1e9,
            "last_loss": loss_value,
            "memory_limit_gb": memory_limit / 1e9,
        }
    finally:
        block.__call__ = original
        mx.set_memory_limit(previous_limit)
        gc.collect()
        mx.clear_cache()


def agreement(shape: str, n_steps: int, batch: int, length: int) -> dict:
    """Routes int4 and int4-bf16 against int4-f32 (the same int4 values in float32: the reference)
    from the same LoRA initialisation over the same batches."""
    vocab = SHAPES[shape]["vocab_size"]
    data, lengths = batches(vocab, batch, length, n_steps, seed=4242)
    found = {}
    for route in ("int4", "int4-bf16", "int4-jit", "int4-f32"):
        model = build(shape, route)
        initial = {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.trainable_parameters())}
        optimizer = optim.Adam(learning_rate=OPTIONS.learning_rate)  # constant: the adapters move from step 1
        optimizer.init(model.trainable_parameters())
        step, state = make_step(model, optimizer, 1)
        model.train()
        first = default_loss(model, data[0], lengths)[0].item()
        losses = []
        for i in range(n_steps):
            loss, _, accumulated = step(data[i], lengths, None, True)
            mx.eval(state, loss, accumulated)
            losses.append(round(loss.item(), 5))
        after = default_loss(model, data[0], lengths)[0].item()
        final = {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.trainable_parameters())}
        found[route] = {
            "first_loss": first,
            "losses": losses,
            "loss_after": after,
            "final": final,
            "delta": {k: final[k] - initial[k] for k in final},
        }
        del model, optimizer, step, state
        gc.collect()
        mx.clear_cache()

    def compare(x: str, y: str) -> dict:
        a, b = found[x], found[y]
        diff = np.sqrt(sum(float(np.sum((a["delta"][k] - b["delta"][k]) ** 2)) for k in a["delta"]))
        norm = np.sqrt(sum(float(np.sum(b["delta"][k] ** 2)) for k in b["delta"]))
        return {
            "max_abs_diff_lora": max(float(np.max(np.abs(a["final"][k] - b["final"][k]))) for k in a["final"]),
            "relative_diff_of_updates": float(diff / norm) if norm else None,
            "first_loss_diff": abs(a["first_loss"] - b["first_loss"]),
            "loss_after_diff": abs(a["loss_after"] - b["loss_after"]),
        }

    return {
        "steps": n_steps,
        "batch": batch,
        "length": length,
        "routes": {r: {k: found[r][k] for k in ("first_loss", "losses", "loss_after")} for r in found},
        "largest_update": max(float(np.max(np.abs(d))) for d in found["int4-f32"]["delta"].values()),
        "int4 vs int4-bf16": compare("int4", "int4-bf16"),
        "int4 vs int4-jit": compare("int4", "int4-jit"),
        "int4-jit vs int4-f32": compare("int4-jit", "int4-f32"),
        "int4 vs int4-f32": compare("int4", "int4-f32"),
        "int4-bf16 vs int4-f32": compare("int4-bf16", "int4-f32"),
    }


PROBES = ("step", "step-limit", "step-nocache", "eager", "eager-2eval", "forward", "grad")


def memory_probe(model, vocab: int, batch: int, length: int, variant: str, steps: int, limit_gb: float) -> dict:
    """Peak memory of one piece of the training step, with checkpointing as train() applies it.

    step         the pipeline's compiled step (make_step), evaluated as train() does
    step-limit   the same under mx.set_memory_limit(limit_gb): eval then waits for queued GPU work
                 to finish (and release what it holds) whenever active memory is over the limit
    step-nocache the same with mx.set_cache_limit(0) and mx.clear_cache() after every step
    eager        the same step not compiled: value_and_grad and Adam's update, one mx.eval
    eager-2eval  not compiled, the loss evaluated first (forward), then gradients and update
    forward      default_loss alone (no gradient)
    grad         value_and_grad alone (no update)
    Each: the peak of the first call (compilation for the compiled ones) and the largest per-call
    peak of the next `steps` calls (mx.reset_peak_memory() before each), active memory before."""
    block = type(model.layers[0])
    original = block.__call__
    grad_checkpoint(model.layers[0])
    old_limit = old_cache = None
    try:
        optimizer = optim.Adam(learning_rate=schedule(OPTIONS, 1000))
        optimizer.init(model.trainable_parameters())
        model.train()
        loss_and_grad = nn.value_and_grad(model, default_loss)
        if variant.startswith("step"):
            step, state = make_step(model, optimizer, 1)

            def call(data, lengths):
                loss, _, accumulated = step(data, lengths, None, True)
                mx.eval(state, loss, accumulated)
        elif variant == "eager":

            def call(data, lengths):
                (loss, _), grads = loss_and_grad(model, data, lengths)
                optimizer.update(model, grads)
                mx.eval(model.trainable_parameters(), optimizer.state, loss)
        elif variant == "eager-2eval":

            def call(data, lengths):
                (loss, _), grads = loss_and_grad(model, data, lengths)
                mx.eval(loss)
                optimizer.update(model, grads)
                mx.eval(model.trainable_parameters(), optimizer.state)
        elif variant == "forward":

            def call(data, lengths):
                mx.eval(default_loss(model, data, lengths)[0])
        elif variant == "grad":

            def call(data, lengths):
                (loss, _), grads = loss_and_grad(model, data, lengths)
                mx.eval(loss, grads)
        else:
            raise ValueError(variant)
        data, lengths = batches(vocab, batch, length, 2, seed=batch * 100_003 + length)
        gc.collect()
        mx.clear_cache()
        if variant == "step-limit":
            old_limit = mx.set_memory_limit(int(limit_gb * 1e9))
        if variant == "step-nocache":
            old_cache = mx.set_cache_limit(0)
        before = mx.get_active_memory()
        peaks, times = [], []
        for i in range(1 + steps):
            mx.reset_peak_memory()
            tic = time.perf_counter()
            call(data[i % 2], lengths)
            times.append(time.perf_counter() - tic)
            peaks.append(mx.get_peak_memory())
            if variant == "step-nocache":
                mx.clear_cache()
        return {
            "before_gb": before / 1e9,
            "first_peak_gb": peaks[0] / 1e9,
            "peak_gb": max(peaks[1:]) / 1e9,
            "peaks_gb": [round(p / 1e9, 3) for p in peaks],
            "first_s": times[0],
            "step_s": statistics.median(times[1:]),
            "after_gb": mx.get_active_memory() / 1e9,
        }
    finally:
        block.__call__ = original
        if old_limit is not None:
            mx.set_memory_limit(old_limit)
        if old_cache is not None:
            mx.set_cache_limit(old_cache)
        gc.collect()
        mx.clear_cache()


def describe_machine() -> dict:
    info = {
        "mlx": mx.__version__,
        "mlx_lm": mlx_lm.__version__,
        "device": str(mx.default_device()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "blas": BLAS,
    }
    for name in ("device_info",):
        fn = getattr(mx, name, None) or getattr(getattr(mx, "metal", None), name, None)
        if fn:
            try:
                info["device_info"] = {k: v for k, v in fn().items() if isinstance(v, (str, int, float))}
            except Exception as error:  # noqa: BLE001 (a description, not a result)
                info["device_info"] = repr(error)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="mistral-7b")
    parser.add_argument("--routes", nargs="*", choices=ROUTES, default=["int4", "int4-bf16", "bf16"])
    parser.add_argument(
        "--configs",
        nargs="*",
        default=["2x512", "4x512", "8x1024"],
        help="BATCHxLENGTH, or BATCHxLENGTHxACCUMULATION (gradient accumulation; default 1)",
    )
    parser.add_argument("--checkpoint", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument(
        "--limit",
        nargs="+",
        choices=("on", "off"),
        default=["on"],
        help="with checkpointing: lower MLX's memory limit as train() does (farense.training.limit_queued_memory)",
    )
    parser.add_argument(
        "--margins",
        nargs="+",
        type=float,
        default=[None],
        help="GB over the memory in use at the start that the lowered limit allows (default: train()'s)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--agreement", type=int, default=0, help="N: compare routes int4 and int4-bf16 over N steps")
    parser.add_argument("--agreement-config", default="2x512")
    parser.add_argument("--json", type=Path, help="append one JSON line per result here")
    parser.add_argument(
        "--probe",
        nargs="*",
        choices=PROBES,
        default=[],
        help="peak memory of pieces of the step (int4 route, checkpointing on) for each of --probe-configs",
    )
    parser.add_argument("--probe-configs", nargs="*", default=["1x256", "1x512", "2x512"])
    parser.add_argument("--probe-limit-gb", type=float, default=5.0, help="the memory limit of the step-limit probe")
    parser.add_argument("--deadline", type=float, default=0, help="seconds: start no new probe after this long")
    args = parser.parse_args()

    machine = describe_machine()
    print("machine:", json.dumps(machine), flush=True)
    sink = open(args.json, "a", encoding="utf-8") if args.json else None

    def emit(record: dict) -> None:
        if sink:
            sink.write(
                json.dumps({**record, "shape": args.shape, "mlx": machine["mlx"], "device": machine["device"]}) + "\n"
            )
            sink.flush()

    vocab = SHAPES[args.shape]["vocab_size"]
    if args.probe:
        start = time.perf_counter()
        model = build(args.shape, "int4")
        print(
            f"int4 model built in {time.perf_counter() - start:.1f} s, active {mx.get_active_memory() / 1e9:.3f} GB",
            flush=True,
        )
        for variant in args.probe:
            for config in args.probe_configs:
                if args.deadline and time.perf_counter() - start > args.deadline:
                    print(f"probe {variant} {config}: skipped (deadline)", flush=True)
                    continue
                batch, length = (int(x) for x in config.split("x"))
                record = {
                    "probe": variant,
                    "batch": batch,
                    "length": length,
                    "limit_gb": args.probe_limit_gb if variant == "step-limit" else None,
                }
                try:
                    record.update(memory_probe(model, vocab, batch, length, variant, args.steps, args.probe_limit_gb))
                except Exception as error:  # noqa: BLE001 (reported, the next probe runs)
                    record["error"] = repr(error)[:300]
                emit(record)
                print("probe", json.dumps(record), flush=True)
        del model
        gc.collect()
        mx.clear_cache()
    if args.routes and args.configs:
        print(
            f"{'route':<10} {'batch':>5} {'len':>5} {'acc':>3} {'ckpt':>4} {'limit':>5} {'tok/s':>8} {'step s':>7} {'first s':>7} "
            f"{'peak GB':>8} {'timed GB':>8} {'model GB':>8} {'limit GB':>8}",
            flush=True,
        )
    for route in args.routes:
        if not args.configs:
            break
        tic = time.perf_counter()
        model = build(args.shape, route)
        built = time.perf_counter() - tic
        model_gb = mx.get_active_memory() / 1e9
        if route == "int4":  # what train_adapter.py's training.compute: auto picks for this model here
            cuda = cuda_available()
            total = mx.device_info().get("total_memory") if cuda else None
            size = 2 * get_total_parameters(model)
            choice = compute_route("auto", True, mx.default_device() == mx.cpu, cuda, total, size)
            print(
                f"compute: auto for this int4 model here -> {choice} (dequantized size {size / 1e9:.1f} GB, "
                f"GPU memory {total / 1e9 if total else 0:.1f} GB, CUDA {cuda})",
                flush=True,
            )
            emit(
                {
                    "compute_choice": choice,
                    "dequantized_gb": size / 1e9,
                    "gpu_memory_gb": (total or 0) / 1e9,
                    "cuda": cuda,
                }
            )
        for config in args.configs:
            batch, length, *rest = (int(x) for x in config.split("x"))
            accumulation = rest[0] if rest else 1
            for ckpt in args.checkpoint:
                for limit, margin in [
                    (lim, m)
                    for lim in (args.limit if ckpt == "on" or route == "int4-jit" else ["off"])
                    for m in (args.margins if lim == "on" else [None])
                ]:
                    record = {
                        "route": route,
                        "batch": batch,
                        "length": length,
                        "accumulation": accumulation,
                        "checkpoint": ckpt == "on",
                        "limit": limit == "on",
                        "margin_gb": margin,
                        "model_gb": model_gb,
                        "build_s": built,
                    }
                    head = f"{route:<10} {batch:>5} {length:>5} {accumulation:>3} {ckpt:>4} {limit:>5}"
                    try:
                        record.update(
                            time_config(
                                model,
                                vocab,
                                batch,
                                length,
                                ckpt == "on",
                                args.warmup,
                                args.steps,
                                limit == "on",
                                accumulation,
                                route == "int4-jit",
                                margin,
                            )
                        )
                    except Exception as error:  # noqa: BLE001 (out of memory: reported, the next config runs)
                        record["error"] = repr(error)[:300]
                        print(f"{head} failed: {record['error']}", flush=True)
                        emit(record)
                        continue
                    emit(record)
                    print(
                        f"{head} {record['tokens_per_second']:8.0f} {record['median_step_s']:7.3f} {record['first_step_s']:7.2f} "
                        f"{record['peak_memory_gb']:8.2f} {record['steady_peak_gb']:8.2f} {model_gb:8.2f} {record['memory_limit_gb']:8.2f}",
                        flush=True,
                    )
        del model
        gc.collect()
        mx.clear_cache()
    if args.agreement:
        batch, length = (int(x) for x in args.agreement_config.split("x"))
        result = agreement(args.shape, args.agreement, batch, length)
        emit({"agreement": result})
        print("agreement:", json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
