"""LoRA/QLoRA training: mlx-lm's tuner, and what users ask for around it.

From mlx-lm: the LoRA layers (linear_to_lora_layers), the compiled training step (the same shape
as mlx-lm's trainer), gradient checkpointing, validation (evaluate) and the learning-rate
schedules. The loss is default_loss's, computed by farense.loss.chunked_loss (the output layer in
chunks of positions, for large vocabularies). Added here:
- epochs turned into iterations from the training set's size;
- validation every N iterations; the output adapter is the best one by validation loss;
- early stopping with patience and minimum delta;
- a watchdog that stops on a NaN or exploding loss, naming the step;
- checkpoints with optimizer state every N iterations, and exact resume after a kill: data
  order is a function of (seed, iteration) and dropout is reseeded per iteration, so a
  resumed run ends at the same adapter as an uninterrupted one; a damaged checkpoint is set
  aside and the one before it resumed (farense.checkpoints);
- batches of similar length, with the share of padded tokens measured;
- a metrics table (step, epoch, losses, learning rate, padding), and apart from it what the run
  measured (tokens/s, peak memory: `Measured`), which differs from run to run and so stays out of
  the adapter folder and the checkpoints (farense.run_record).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.nn.utils import average_gradients
from mlx.utils import tree_flatten, tree_map
from mlx_lm.tuner.trainer import evaluate, grad_checkpoint, iterate_batches

from . import checkpoints
from .compute import cuda_available
from .diskspace import writing
from .errors import PipelineError
from .jit_dequant import uses_jit_dequant
from .loss import chunked_loss
from .memory_presets import graphs_bounded
from .options import from_config

log = logging.getLogger(__name__)

MODULE_PATHS = {
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj",
    "gate_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj",
}
# Batches are padded to a multiple of this (plus one): mlx-lm uses 32, which on short question
# and answer pairs pads a third of every batch; 8 keeps the number of distinct shapes (and
# recompilations of the training step) small all the same.
PAD_MULTIPLE = 8
METRIC_FIELDS = ("step", "epoch", "train_loss", "val_loss", "learning_rate", "padding_share")


@dataclass(frozen=True)
class TrainOptions:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
    num_layers: int = -1
    batch_size: int = 2
    grad_accumulation: int = 2
    learning_rate: float = 2e-4
    warmup_steps: int = 100
    decay: str = "cosine"
    min_learning_rate: float = 0.0
    epochs: float = 3.0
    max_seq_length: int = 512
    mask_prompt: bool = True
    grad_checkpoint: bool = False
    seed: int = 0
    steps_per_eval: int = 50
    steps_per_report: int = 10
    checkpoint_every: int = 200
    val_batches: int = -1
    early_stopping_patience: int = 5
    early_stopping_min_delta: float = 0.0
    # best: the adapter of the lowest validation loss (the notebooks' recipe); last: the final one.
    # The validation split holds facts that training never states, so its loss rises as a model
    # learns the training facts: on Gemma 3 270M the best was at epoch 2-5 of 10-30, and facts were
    # learnt later (BENCHMARKS.md 7.1). A recipe meant to teach facts keeps the last.
    keep: str = "best"
    divergence_factor: float = 10.0

    from_config = classmethod(from_config)

    @property
    def scale(self) -> float:
        # mlx-lm's LoRA takes `scale`, the factor on the low-rank update; PEFT's alpha/rank.
        return self.alpha / self.rank


@dataclass
class RunState:
    """What a checkpoint holds besides weights, and what the summary reports."""

    iteration: int = 0
    best_val_loss: float = math.inf
    best_step: int = -1
    evals_without_improvement: int = 0
    trained_tokens: int = 0
    padded_tokens: int = 0
    batch_tokens: int = 0
    stopped_early: bool = False
    reference_loss: float | None = None
    skipped_examples: int = 0
    metrics: list = field(default_factory=list)


@dataclass
class Measured:
    """What this process measured while it trained, and whether it resumed: the run record's
    figures. Not in RunState: checkpoints, like the adapter folder, hold only what the seed and
    data decide, so that two builds of the same inputs write the same bytes."""

    resumed_from: int | None = None  # the checkpoint's iteration, when this process resumed one
    set_aside: list = field(default_factory=list)  # damaged checkpoints renamed out of the way (farense.checkpoints)
    seconds: float = 0.0  # in the training step
    tokens: int = 0  # trained by this process (after a resume: since the checkpoint)
    steps: list = field(default_factory=list)  # at each metrics row: step, tokens/s, peak memory

    @property
    def tokens_per_second(self) -> float | None:
        return round(self.tokens / self.seconds, 1) if self.seconds else None


def lora_config(options: TrainOptions, num_layers: int) -> dict:
    """adapter_config.json as mlx-lm writes and reads it."""
    keys = []
    for name in options.target_modules:
        if name not in MODULE_PATHS:
            raise PipelineError(
                f"training.lora.target_modules: unknown module '{name}' (choose from {', '.join(MODULE_PATHS)})"
            )
        keys.append(MODULE_PATHS[name])
    return {
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {"rank": options.rank, "scale": options.scale, "dropout": options.dropout, "keys": keys},
    }


def iterations_for(n_train: int, options: TrainOptions) -> tuple[int, int]:
    """(iterations, batches per epoch): an iteration is one batch; an optimizer step is
    `grad_accumulation` iterations."""
    per_epoch = n_train // options.batch_size
    if per_epoch == 0:
        raise PipelineError(
            f"the training set has {n_train} example(s), fewer than training.batch_size ({options.batch_size})"
        )
    iterations = max(options.grad_accumulation, int(round(options.epochs * per_epoch)))
    return iterations - iterations % options.grad_accumulation, per_epoch


def schedule(options: TrainOptions, total_updates: int):
    """Linear warmup to the learning rate, then the chosen decay down to min_learning_rate."""
    decay_steps = max(total_updates - options.warmup_steps, 1)
    if options.decay == "cosine":
        main = optim.cosine_decay(options.learning_rate, decay_steps, options.min_learning_rate)
    elif options.decay == "linear":
        main = optim.linear_schedule(options.learning_rate, options.min_learning_rate, decay_steps)
    else:
        main = lambda step: mx.array(options.learning_rate)  # noqa: E731 (constant)
    if options.warmup_steps <= 0:
        return main
    warmup = optim.linear_schedule(0.0, options.learning_rate, options.warmup_steps)
    return optim.join_schedules([warmup, main], [options.warmup_steps])


class LengthBatches:
    """Batches of similar length (sorted, then cut), visited in an order that depends only on
    (seed, epoch): iteration i always sees the same batch, which makes resume exact. With
    `size` data-parallel ranks, rank `rank` takes its contiguous share of every batch, padded to
    the width of the whole batch: the same rows, shapes and padding as one process."""

    def __init__(self, dataset, batch_size: int, max_seq_length: int, seed: int, rank: int = 0, size: int = 1):
        if batch_size % size:
            raise PipelineError(f"training.batch_size ({batch_size}) is not a multiple of training.processes ({size})")
        self.dataset = dataset
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.seed = seed
        self.share = slice(rank * batch_size // size, (rank + 1) * batch_size // size)
        # Sort by tokenized length. (mlx-lm sorts by CacheDataset.itemlen, which for JSON lines
        # is the number of keys of the raw record, so its batches are not length-sorted.)
        order = sorted(range(len(dataset)), key=lambda i: len(dataset[i][0]))
        self.batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def batch(self, iteration: int):
        """(tokens, lengths, real tokens, padded size) for a 0-based iteration number: this
        rank's rows; the token counts are the whole batch's."""
        epoch, position = divmod(iteration, len(self.batches))
        permutation = np.random.default_rng([self.seed, epoch]).permutation(len(self.batches))
        items = [self.dataset[j] for j in self.batches[permutation[position]]]
        tokens, offsets = zip(*items)
        lengths = [min(len(t), self.max_seq_length) for t in tokens]
        width = min(1 + PAD_MULTIPLE * ((max(lengths) + PAD_MULTIPLE - 1) // PAD_MULTIPLE), self.max_seq_length)
        mine = range(len(items))[self.share]
        array = np.zeros((len(mine), width), np.int32)
        for row, i in enumerate(mine):
            array[row, : lengths[i]] = tokens[i][: lengths[i]]
        return mx.array(array), mx.array([(offsets[i], lengths[i]) for i in mine]), sum(lengths), len(items) * width


def with_targets_in_window(dataset, max_seq_length: int) -> tuple[list, int]:
    """The tokenized examples whose answer starts inside the first max_seq_length tokens, and how
    many others there were. A prompt longer than the window leaves nothing to learn, and a batch
    of such examples has a 0/0 loss: NaN."""
    items = [dataset[i] for i in range(len(dataset))]
    kept = [item for item in items if item[1] < min(len(item[0]), max_seq_length) - 1]
    return kept, len(items) - len(kept)


def fingerprint(options: TrainOptions, inputs: dict[str, str]) -> str:
    """What a checkpoint must match to be resumed: the options and the inputs' hashes."""
    payload = json.dumps({"options": asdict(options), "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _save_best(model, path: Path) -> None:
    """The model's adapters: the best validation's so far, written in place (a kill midway is
    mended on resume, which copies the checkpoint's own copy over it, or, before the first
    checkpoint, starts again from step 0); or, with keep: last, the output's."""
    with writing(path):
        mx.save_safetensors(str(path), dict(tree_flatten(model.trainable_parameters())))


# Low-memory training (training.grad_checkpoint, the 8gb memory preset), and just-in-time QLoRA
# where CUDA's graphs are not small (below), lower MLX's memory limit to the memory in use when
# training starts (weights, adapters) plus a margin, for the time of train(). The limit is a
# guideline, not a cap that fails: while active memory is over it, MLX's eval waits for queued GPU
# work to finish before queueing more. Without it, the buffers held by work queued ahead of the GPU
# (each op's inputs and outputs stay alive until its batch of kernels has run) count in the peak: at
# the Mistral-7B shape with int4 weights and checkpointing on an H200, 1 x 256 tokens peaked at 6.26
# GB and 1 x 512 at 8.30 GB, where the step itself needs 4.4-4.6 GB; with a 1 GB margin, 5.15 and
# 5.20 GB at 7-11 % fewer tokens/s (BENCHMARKS.md 1.3). Just in time at 1 x 256 (transient bf16
# weights of up to 117 MB queued): 5.99 GB with no limit, 5.21 / 4.96 / 4.83 GB with margins of 1 /
# 0.75 / 0.5 GB at 3,711 / 3,055-3,318 / 2,303-3,039 tokens/s (1.12): 0.75 GB keeps the 8gb preset
# under 5 GB.
LOW_MEMORY_MARGIN_BYTES = 750_000_000
# Just in time without checkpointing (batches of 2 x 512 and more, where the activations dwarf the
# queue): no limit where the CUDA graphs are small (memory_presets.LOW_MEMORY_GRAPHS, which bound the
# queue themselves): 15,278 tokens/s in 16.73 GB at 4 x 512 on the H200, against 10,044-11,608 in
# 16.5-16.7 GB with MLX's graphs and a 1 GB margin (BENCHMARKS.md 1.13). Elsewhere (larger graphs
# set by hand, Metal) that margin, JIT_MARGIN_BYTES: 30.0 GB at 4 x 512 without it.
JIT_MARGIN_BYTES = 1_000_000_000


def queue_margin(grad_checkpoint: bool, small_graphs: bool) -> int | None:
    """The margin train() lowers the memory limit by (None: no limit): LOW_MEMORY_MARGIN_BYTES with
    checkpointing; else none with small CUDA graphs (`small_graphs`), JIT_MARGIN_BYTES without
    (also used by tests/benchmarks/bench_gpu_training.py)."""
    if grad_checkpoint:
        return LOW_MEMORY_MARGIN_BYTES
    return None if small_graphs else JIT_MARGIN_BYTES


def small_cuda_graphs() -> bool:
    """Whether MLX computes on CUDA here with graphs no larger than LOW_MEMORY_GRAPHS."""
    return cuda_available() and mx.default_device() == mx.gpu and graphs_bounded(os.environ)


def limit_queued_memory(margin: int) -> None:
    """Lower MLX's memory limit to the active memory plus `margin` (never raise it)."""
    limit = mx.get_active_memory() + margin
    if limit < mx.get_memory_limit():
        mx.set_memory_limit(limit)


def make_step(model, optimizer, grad_accumulation: int, loss=chunked_loss):
    """mlx-lm's training step, compiled: accumulate gradients, update every grad_accumulation
    batches. Returns (step, compiled_state): `step(batch, lengths, previous, do_update)` gives
    (loss, tokens, accumulated gradients or None); evaluate compiled_state after each call.
    (Also used by tests/benchmarks/bench_gpu_training.py and bench_loss.py, so that they time
    this very step.)"""
    loss_and_grad = nn.value_and_grad(model, loss)
    compiled_state = [model.state, optimizer.state, mx.random.state]

    ranks = mx.distributed.init().size()

    @partial(mx.compile, inputs=compiled_state, outputs=compiled_state)
    def step(batch, lengths, previous, do_update):
        (loss, tokens), grads = loss_and_grad(model, batch, lengths)
        if ranks > 1:
            # Each rank's loss is the mean over its own tokens; the whole batch's is the mean
            # over all of them, so each rank's gradient counts by its share of the tokens
            # (mlx-lm's trainer averages the ranks plainly, which weighs a short share as much
            # as a long one).
            total = mx.distributed.all_sum(tokens)
            share = (tokens * ranks).astype(mx.float32) / total.astype(mx.float32)
            grads = average_gradients(tree_map(lambda g: g * share.astype(g.dtype), grads))
            loss = mx.distributed.all_sum(loss * tokens.astype(loss.dtype)) / total.astype(loss.dtype)
            tokens = total
        if previous is not None:
            grads = tree_map_add(grads, previous)
        if do_update:
            if grad_accumulation > 1:
                grads = tree_scale(grads, 1.0 / grad_accumulation)
            optimizer.update(model, grads)
            grads = None
        return loss, tokens, grads

    return step, compiled_state


def train(
    model, train_set, valid_set, options: TrainOptions, out_dir: Path, checkpoint_dir: Path, run_id: str, progress=None
) -> tuple[RunState, Measured]:
    """Train LoRA adapters on `model` (layers already converted); write the best adapter to out_dir.
    Returns what the run decided (RunState) and what it measured."""
    previous_limit = mx.get_memory_limit()
    try:
        return _train(model, train_set, valid_set, options, out_dir, checkpoint_dir, run_id, progress)
    finally:
        mx.set_memory_limit(previous_limit)  # lowered by limit_queued_memory in low-memory training


def _train(
    model, train_set, valid_set, options: TrainOptions, out_dir: Path, checkpoint_dir: Path, run_id: str, progress
) -> tuple[RunState, Measured]:
    train_set, skipped_train = with_targets_in_window(train_set, options.max_seq_length)
    valid_set, skipped_valid = with_targets_in_window(valid_set, options.max_seq_length)
    if skipped_train or skipped_valid:
        log.warning(
            "%d training and %d validation example(s) have no answer token within training.max_seq_length (%d): left out",
            skipped_train,
            skipped_valid,
            options.max_seq_length,
        )
    if len(valid_set) < options.batch_size:
        raise PipelineError(
            f"only {len(valid_set)} validation example(s) fit training.max_seq_length, fewer than training.batch_size ({options.batch_size})"
        )
    world = mx.distributed.init()  # one process unless mlx.launch started data-parallel ranks
    main_rank = world.rank() == 0
    batches = LengthBatches(
        train_set, options.batch_size, options.max_seq_length, options.seed, world.rank(), world.size()
    )
    iterations, per_epoch = iterations_for(len(train_set), options)
    optimizer = optim.Adam(learning_rate=schedule(options, iterations // options.grad_accumulation))
    optimizer.init(model.trainable_parameters())
    resumed, measured = (
        checkpoints.resume(checkpoint_dir, model, optimizer, run_id, lambda c: RunState(**c), main_rank),
        Measured(),
    )
    measured.set_aside = resumed.set_aside
    if resumed.counters is None:
        state = RunState(skipped_examples=skipped_train + skipped_valid)
    else:
        state = RunState(**resumed.counters)
        measured.resumed_from = state.iteration
        log.info("resuming from the checkpoint at iteration %d (%s)", state.iteration, resumed.source)
    if options.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    if options.grad_checkpoint or uses_jit_dequant(model):
        margin = queue_margin(options.grad_checkpoint, small_cuda_graphs())
        if margin is not None:
            limit_queued_memory(margin)

    step, compiled_state = make_step(model, optimizer, options.grad_accumulation)

    def validate() -> float:
        # mlx-lm's evaluate visits the batches in an order drawn from numpy's global generator:
        # unseeded, the losses are summed in another order on every run (best_val_loss then moved in
        # the 7th digit from build to build, and a near tie could pick another best step); seeded
        # here at every validation, so that two builds agree to the bit and a resumed run visits
        # the batches as the uninterrupted one did (with training.val_batches set, every
        # validation also sees the same batches).
        np.random.seed(options.seed)
        return evaluate(
            model,
            valid_set,
            options.batch_size,
            options.val_batches,
            options.max_seq_length,
            chunked_loss,
            iterate_batches,
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best_file = checkpoint_dir / "best.safetensors"
    if state.iteration == 0:
        val = validate()
        state.metrics.append(_row(0, 0.0, None, val, 0.0, None))
        state.best_val_loss, state.best_step = val, 0
        if main_rank:
            _save_best(model, best_file)
        log.info("step 0: validation loss %.4f", val)

    model.train()
    accumulated, window_loss, window_steps, window_tokens, window_time = None, 0.0, 0, 0, 0.0
    while state.iteration < iterations:
        it = state.iteration + 1
        batch, lengths, real, padded = batches.batch(state.iteration)
        mx.random.seed(options.seed * 1_000_003 + it)  # dropout depends on the iteration only
        tic = time.perf_counter()
        loss, tokens, accumulated = step(batch, lengths, accumulated, it % options.grad_accumulation == 0)
        mx.eval(compiled_state, loss, accumulated)
        seconds = time.perf_counter() - tic
        loss_value = loss.item()
        if state.reference_loss is None:
            state.reference_loss = loss_value
        if not math.isfinite(loss_value) or loss_value > options.divergence_factor * state.reference_loss:
            raise PipelineError(
                f"training diverged at step {it} (loss {loss_value:.4g}): lower training.learning_rate "
                f"(now {options.learning_rate:g}) or raise training.warmup_steps (now {options.warmup_steps}); "
                f"the checkpoints saved before (best: step {state.best_step}) are kept in {checkpoint_dir}"
            )
        state.iteration = it
        state.trained_tokens += int(tokens.item())
        state.batch_tokens += padded
        state.padded_tokens += padded - real
        measured.seconds += seconds
        measured.tokens += int(tokens.item())
        window_loss += loss_value
        window_steps += 1
        window_tokens += int(tokens.item())
        window_time += seconds
        if progress is not None:
            progress(it, iterations, loss_value)

        evaluate_now = it % options.steps_per_eval == 0 or it == iterations
        if it % options.steps_per_report == 0 or evaluate_now:
            val = None
            if evaluate_now:
                val = validate()
                model.train()
                improved = val < state.best_val_loss - options.early_stopping_min_delta
                if improved:
                    state.best_val_loss, state.best_step, state.evals_without_improvement = val, it, 0
                    if main_rank:
                        _save_best(model, best_file)
                else:
                    state.evals_without_improvement += 1
            learning_rate = float(optimizer.learning_rate.item())
            row = _row(
                it,
                it / per_epoch,
                window_loss / window_steps,
                val,
                learning_rate,
                state.padded_tokens / max(state.batch_tokens, 1),
            )
            state.metrics.append(row)
            speed = {
                "step": it,
                "tokens_per_second": round(window_tokens / window_time, 1) if window_time else None,
                "peak_memory_gb": round(mx.get_peak_memory() / 1e9, 4),
            }
            measured.steps.append(speed)
            log.info(
                "step %d/%d epoch %.2f train %.4f%s lr %.2e %.0f tok/s peak %.3f GB",
                it,
                iterations,
                row["epoch"],
                row["train_loss"],
                f" val {val:.4f}" if val is not None else "",
                learning_rate,
                speed["tokens_per_second"] or 0,
                speed["peak_memory_gb"],
            )
            window_loss, window_steps, window_tokens, window_time = 0.0, 0, 0, 0.0
            if evaluate_now and state.evals_without_improvement >= options.early_stopping_patience > 0:
                state.stopped_early = True
                log.info(
                    "early stop at step %d: no improvement over %.4f (step %d) in %d evaluations",
                    it,
                    state.best_val_loss,
                    state.best_step,
                    options.early_stopping_patience,
                )
        if main_rank and accumulated is None and (it % options.checkpoint_every == 0 or state.stopped_early):
            checkpoints.save(checkpoint_dir, model, optimizer, {"run": run_id, **asdict(state)})
        if state.stopped_early:
            break

    if main_rank:
        if options.keep == "last":
            _save_best(model, out_dir / "adapters.safetensors")
        else:
            shutil.copyfile(best_file, out_dir / "adapters.safetensors")
        write_metrics(state.metrics, out_dir / "metrics.csv")
    return state, measured


def tree_map_add(a, b):
    return tree_map(lambda x, y: x + y, a, b)


def tree_scale(a, factor: float):
    return tree_map(lambda x: x * factor, a)


def _row(step, epoch, train_loss, val_loss, lr, padding) -> dict:
    def r(x, n=6):
        return None if x is None else round(float(x), n)

    return {
        "step": step,
        "epoch": r(epoch, 4),
        "train_loss": r(train_loss),
        "val_loss": r(val_loss),
        "learning_rate": r(lr, 10),
        "padding_share": r(padding, 4),
    }


def write_metrics(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
