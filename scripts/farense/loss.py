"""Cross-entropy in chunks of positions: mlx-lm's default_loss without the (batch, length, vocabulary)
logits array.

default_loss computes `model(inputs)`, every position's logits at once: at batch 2 x 512 with
Gemma 3's 262,144-token vocabulary, 268M logits (1 GB in float32, and as much again for their
gradient). chunked_loss runs the model's body once, then the output layer a chunk of positions
at a time, each chunk under mx.checkpoint: its logits live only while its logsumexp and target
logit are taken, and the backward pass recomputes them one chunk at a time.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tuner.trainer import default_loss

# mlx-lm model modules whose Model.__call__ is `out = self.model(inputs)`, then
# `self.model.embed_tokens.as_linear(out)` when the embedding is tied, else `self.lm_head(out)`,
# and nothing after (no soft-capping, no scaling): how each says the embedding is tied.
TIED = {
    "mlx_lm.models.llama": lambda model: model.args.tie_word_embeddings,  # also Mistral's
    "mlx_lm.models.qwen2": lambda model: model.args.tie_word_embeddings,
    "mlx_lm.models.qwen3": lambda model: model.args.tie_word_embeddings,
    "mlx_lm.models.gemma3_text": lambda model: model.tie_word_embeddings,  # set by sanitize() without lm_head
}
LOGITS_PER_CHUNK = 1 << 24
SMALL_VOCAB = 32768


def output_layer(model):
    """(module, project) with `project(hidden) == model(inputs)` for `hidden = model.model(inputs)`,
    where `module` holds the output layer's weights; None for a model this module cannot split."""
    tied = TIED.get(type(model).__module__)
    if tied is None or not isinstance(getattr(model, "model", None), nn.Module):
        return None
    if tied(model):
        embed = model.model.embed_tokens
        return embed, embed.as_linear
    return model.lm_head, model.lm_head


def chunk_rows(vocab: int) -> int:
    """Positions per chunk for a vocabulary of `vocab` tokens."""
    return max(1, LOGITS_PER_CHUNK // vocab)


def chunked_loss(model, batch, lengths, rows: int | None = None):
    """default_loss(model, batch, lengths): (mean cross-entropy over the masked tokens, their number),
    computed `rows` positions at a time (None: chunk_rows of the vocabulary, or default_loss itself
    for a vocabulary of at most SMALL_VOCAB tokens or a model output_layer cannot split)."""
    layer = output_layer(model)
    if layer is None or (rows is None and model.args.vocab_size <= SMALL_VOCAB):
        return default_loss(model, batch, lengths)
    rows = rows or chunk_rows(model.args.vocab_size)
    module, project = layer
    inputs, targets = batch[:, :-1], batch[:, 1:]
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
    ntoks = mask.sum()

    hidden = model.model(inputs)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets, flat_mask = targets.reshape(-1), mask.reshape(-1)
    # mx.checkpoint differentiates its arguments only (a closed-over array gets a zero gradient):
    # the output layer's trainable weights go in as an argument, and are put back afterwards.
    params = module.trainable_parameters()

    def chunk_ce(start: int):
        def ce(chunk_params, h):
            module.update(chunk_params)
            logits = project(h)
            module.update(params)
            losses = nn.losses.cross_entropy(logits, targets[start : start + rows]) * flat_mask[start : start + rows]
            return losses.astype(mx.float32).sum()

        return mx.checkpoint(ce)

    starts = range(0, hidden.shape[0], rows)
    chunks = mx.split(hidden, list(starts[1:]))
    total = sum(chunk_ce(start)(params, h) for start, h in zip(starts, chunks))
    return total / ntoks, ntoks
