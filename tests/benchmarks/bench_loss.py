"""Benchmark of the training loss: mlx-lm's default_loss against farense.loss.chunked_loss.

    python tests/benchmarks/bench_loss.py                      # Gemma 3 270M shape, batch 2 x 512
    python tests/benchmarks/bench_loss.py --layers 2 --losses default auto 32 64 128 256
    python tests/benchmarks/bench_loss.py --layers 2 --vocab 32768 --losses default 512

The model is mlx-lm's gemma3_text Model with the Gemma 3 270M shape (hidden 640, 18 layers,
4 heads, 1 KV head, head_dim 256, intermediate 2048, vocabulary 262,144, the embedding tied as
the output layer) and random weights, in float32 (the pipeline's compute on a CPU); --layers and
--vocab change its depth and vocabulary (below 6 layers, one global-attention layer in every
--layers). LoRA rank 8 on q/k/v of all layers, as the pipeline
trains. The step timed is the pipeline's: farense.training.make_step with the loss under test,
called without an update (loss and gradients, compiled) and evaluated, on a random batch of
--length tokens per row, all of them counted in the loss. Losses (--losses): `default` is
default_loss, `auto` chunked_loss with its own chunk size, an integer chunked_loss with that many
positions per chunk. For each: the first call (compilation included), the median of --steps
timed calls, their peak memory (mx.get_peak_memory, reset before, so including the weights), and
the same for the loss alone (no gradient, not compiled: as validation and the evaluation call it).
OpenBLAS is loaded before MLX when installed (farense.fastblas). Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from farense.fastblas import use_fast_blas  # noqa: E402

BLAS = use_fast_blas()  # before mlx

import mlx.core as mx  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.models import gemma3_text  # noqa: E402
from mlx_lm.tuner.trainer import default_loss, grad_checkpoint  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402

from farense.loss import chunk_rows, chunked_loss  # noqa: E402
from farense.training import TrainOptions, lora_config, make_step  # noqa: E402

GEMMA3_270M = dict(
    model_type="gemma3_text",
    hidden_size=640,
    num_hidden_layers=18,
    intermediate_size=2048,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    vocab_size=262144,
    query_pre_attn_scalar=256,
    sliding_window=512,
    sliding_window_pattern=6,
    rope_theta=1_000_000.0,
    rope_local_base_freq=10_000.0,
    rms_norm_eps=1e-6,
)


def build(layers: int, vocab: int):
    mx.random.seed(0)
    # gemma3_text needs a global-attention layer within the first sliding_window_pattern layers
    shape = dict(GEMMA3_270M, num_hidden_layers=layers, vocab_size=vocab, sliding_window_pattern=min(6, layers))
    model = gemma3_text.Model(gemma3_text.ModelArgs(**shape))
    model.sanitize({})  # a checkpoint without lm_head: the embedding is the output layer, as in 270M
    model.set_dtype(mx.float32)
    model.freeze()
    linear_to_lora_layers(model, layers, lora_config(TrainOptions(), layers)["lora_parameters"])
    mx.eval(model.parameters())
    return model


def loss_for(name: str):
    if name == "default":
        return default_loss
    return chunked_loss if name == "auto" else partial(chunked_loss, rows=int(name))


def measure(model, loss, batch, lengths, steps: int) -> dict:
    step, state = make_step(model, optim.Adam(learning_rate=1e-4), 1, loss=loss)
    mx.clear_cache()
    mx.reset_peak_memory()
    tic = time.perf_counter()
    value, _, grads = step(batch, lengths, None, False)
    mx.eval(state, value, grads)
    first = time.perf_counter() - tic
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        value, _, grads = step(batch, lengths, None, False)
        mx.eval(state, value, grads)
        times.append(time.perf_counter() - tic)
    peak = mx.get_peak_memory()
    del grads
    mx.clear_cache()
    mx.reset_peak_memory()
    tic = time.perf_counter()
    eval_value = loss(model, batch, lengths)[0].item()
    return {
        "first": first,
        "step": statistics.median(times),
        "peak": peak,
        "loss": value.item(),
        "eval": time.perf_counter() - tic,
        "eval_peak": mx.get_peak_memory(),
        "eval_loss": eval_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=GEMMA3_270M["num_hidden_layers"])
    parser.add_argument("--vocab", type=int, default=GEMMA3_270M["vocab_size"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=512, help="tokens per row seen by the model")
    parser.add_argument("--losses", nargs="+", default=["default", "auto"], help="default, auto or positions per chunk")
    parser.add_argument("--steps", type=int, default=3, help="timed calls per loss")
    parser.add_argument(
        "--grad-checkpoint", action="store_true", help="mlx-lm's grad_checkpoint, as training.grad_checkpoint"
    )
    args = parser.parse_args()

    model = build(args.layers, args.vocab)
    if args.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    batch = mx.random.randint(0, args.vocab, (args.batch, args.length + 1))
    lengths = mx.array([[0, args.length]] * args.batch)
    print(
        f"gemma3_text, {args.layers} layers, vocabulary {args.vocab}, batch {args.batch} x {args.length}, "
        f"weights {weights / 1e9:.3f} GB, grad checkpoint {'on' if args.grad_checkpoint else 'off'}; "
        f"{os.cpu_count()} CPU(s), {mx.default_device()}, {BLAS}; auto: {chunk_rows(args.vocab)} positions per chunk"
    )
    print(
        f"{'loss':<8} {'first s':>8} {'step s':>7} {'peak GB':>8} {'eval s':>7} {'eval GB':>8} {'loss value':>11} {'eval loss':>10}"
    )
    for name in args.losses:
        r = measure(model, loss_for(name), batch, lengths, args.steps)
        print(
            f"{name:<8} {r['first']:8.2f} {r['step']:7.2f} {r['peak'] / 1e9:8.3f} {r['eval']:7.2f} {r['eval_peak'] / 1e9:8.3f} "
            f"{r['loss']:11.6f} {r['eval_loss']:10.6f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
