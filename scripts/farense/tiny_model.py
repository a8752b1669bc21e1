"""The default base model: a tiny Mistral-architecture model built offline, with a seed.

It is saved in the Hugging Face layout of a real model (config.json, model.safetensors,
tokenizer files with a chat template), so the stages after it load it exactly as they load
Mistral-7B-v0.1. A short full fine-tune on the training split's text (no validation or test
text) turns random weights into a model that has seen Portuguese about the club.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.models import llama
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.utils import save_config, save_model

from .errors import PipelineError
from .options import from_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinyModelOptions:
    hidden_size: int = 128
    num_hidden_layers: int = 4
    intermediate_size: int = 384
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 2048
    max_position_embeddings: int = 2048
    seed: int = 0
    pretrain_steps: int = 80
    pretrain_batch_size: int = 8
    pretrain_seq_length: int = 128
    pretrain_learning_rate: float = 2e-3

    from_config = classmethod(from_config)


def model_config(options: TinyModelOptions, tokenizer) -> dict:
    return {
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "hidden_size": options.hidden_size,
        "num_hidden_layers": options.num_hidden_layers,
        "intermediate_size": options.intermediate_size,
        "num_attention_heads": options.num_attention_heads,
        "num_key_value_heads": options.num_key_value_heads,
        "head_dim": options.hidden_size // options.num_attention_heads,
        "max_position_embeddings": options.max_position_embeddings,
        "vocab_size": len(tokenizer),
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "torch_dtype": "float16",
    }


def _token_stream(texts: list[str], tokenizer, seq_length: int, rng: np.random.Generator) -> np.ndarray:
    """All texts tokenised, joined with </s>, cut into rows of seq_length + 1 tokens."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    rows = len(ids) // (seq_length + 1)
    if rows == 0:
        raise PipelineError(f"too little text to pretrain the tiny model ({len(ids)} tokens)")
    data = np.array(ids[: rows * (seq_length + 1)], dtype=np.int32).reshape(rows, seq_length + 1)
    return data[rng.permutation(rows)]


def pretrain(model: nn.Module, texts: list[str], tokenizer, options: TinyModelOptions) -> tuple[list[dict], list[dict]]:
    """Full fine-tune on plain text with mlx-lm's loss; returns the loss curve (step, loss, tokens
    seen: what the seed decides) and the speed at the same steps (tokens/s: what the machine
    decides, for the run record)."""
    rng = np.random.default_rng(options.seed)
    data = _token_stream(texts, tokenizer, options.pretrain_seq_length, rng)
    steps = options.pretrain_steps
    schedule = optim.cosine_decay(options.pretrain_learning_rate, max(steps, 1), options.pretrain_learning_rate * 0.1)
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=0.01)
    loss_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch, lengths):
        (loss, tokens), grads = loss_and_grad(model, batch, lengths)
        optimizer.update(model, grads)
        return loss, tokens

    batch_size = min(options.pretrain_batch_size, len(data))
    lengths = mx.array([[0, options.pretrain_seq_length]] * batch_size)
    curve, speed, tic, seen = [], [], time.perf_counter(), 0
    model.train()
    for it in range(1, steps + 1):
        start = ((it - 1) * batch_size) % max(len(data) - batch_size + 1, 1)
        loss, tokens = step(mx.array(data[start : start + batch_size]), lengths)
        mx.eval(state, loss)
        seen += int(tokens.item())
        if it == 1 or it % 20 == 0 or it == steps:
            elapsed = time.perf_counter() - tic
            curve.append({"step": it, "loss": round(loss.item(), 4), "tokens": seen})
            speed.append({"step": it, "seconds": round(elapsed, 3), "tokens_per_second": round(seen / elapsed, 1)})
            log.info("pretrain step %d/%d loss %.3f (%.0f tokens/s)", it, steps, loss.item(), seen / elapsed)
            if not math.isfinite(loss.item()):
                raise PipelineError(
                    f"tiny model pretraining diverged at step {it}: lower model.tiny.pretrain_learning_rate"
                )
    return curve, speed


def build_tiny_model(
    texts: list[str], out_dir: str | Path, options: TinyModelOptions, tokenizer
) -> tuple[dict, list[dict]]:
    """Initialise (seeded), pretrain and save the tiny model into out_dir; return its summary
    (for farense_base.json) and the pretraining's speed (for the run record)."""
    config = model_config(options, tokenizer)
    mx.random.seed(options.seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    curve, speed = pretrain(model, texts, tokenizer, options) if options.pretrain_steps > 0 else ([], [])
    model.set_dtype(mx.float16)
    out_dir = Path(out_dir)
    save_model(out_dir, model)
    save_config(dict(config), out_dir / "config.json")
    parameters = sum(v.size for _, v in tree_flatten(model.parameters()))
    summary = {
        "kind": "tiny",
        "parameters": parameters,
        "config": config,
        "pretrain_curve": curve,
        "pretrain_texts": len(texts),
    }
    return summary, speed
