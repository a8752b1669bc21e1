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
from mlx.utils import tree_map
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
LOGITS_PER_CHUNK = (
    1 << 24
)  # 64 positions of Gemma 3 (262,144 tokens): 64 MB of float32 logits a chunk (BENCHMARKS.md 6.1)
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
    if batch.shape[0] * (batch.shape[1] - 1) <= rows:
        return default_loss(model, batch, lengths)  # one chunk: the same logits, without the recomputation
    inputs, targets = batch[:, :-1], batch[:, 1:]
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
    ntoks = mask.sum()
    hidden = model.model(inputs)
    ce_sum = _ce_sum(*layer, targets.reshape(-1), mask.reshape(-1), rows)
    total = ce_sum(layer[0].trainable_parameters(), hidden.reshape(-1, hidden.shape[-1]))
    return total / ntoks, ntoks


def _ce_sum(module, project, targets, mask, rows: int):
    """f(params, hidden): the masked cross-entropy summed over the rows of hidden, `rows` at a time,
    params being module's trainable parameters. A custom function (mx.checkpoint's idea, made
    serial): forward and backward each compute one chunk's logits after the other, the backward
    recomputing them. Under mx.checkpoint per chunk the chunks are independent, and MLX evaluates
    up to 20 independent branches side by side: at batch 2 x 512 with 4 chunks of Gemma 3 logits
    all four were alive at once in the backward (4.3 GB peak against default_loss's 5.2 GB).
    mx.depends chains each chunk to the previous one's result instead."""
    original = module.trainable_parameters()

    def chunk_sum(params, h, start: int):
        module.update(params)  # differentiated as an argument, not as the module's closed-over arrays
        logits = project(h)
        module.update(original)
        losses = nn.losses.cross_entropy(logits, targets[start : start + rows]) * mask[start : start + rows]
        return losses.astype(mx.float32).sum()

    @mx.custom_function
    def ce_sum(params, hidden):
        total = None
        for start in range(0, hidden.shape[0], rows):
            h = hidden[start : start + rows]
            part = chunk_sum(params, h if total is None else mx.depends(h, total), start)
            total = part if total is None else total + part
        return total

    @ce_sum.vjp
    def ce_sum_vjp(primals, cotangent, _):
        params, hidden = primals
        grads, d_hidden = None, []
        for start in range(0, hidden.shape[0], rows):
            h = hidden[start : start + rows]
            scaled = lambda p, x, start=start: cotangent * chunk_sum(p, x, start)  # noqa: E731
            d_params, d_h = mx.grad(scaled, argnums=(0, 1))(params, h if not d_hidden else mx.depends(h, d_hidden[-1]))
            grads = d_params if grads is None else tree_map(mx.add, grads, d_params)
            d_hidden.append(d_h)
        return grads, mx.concatenate(d_hidden)

    return ce_sum
