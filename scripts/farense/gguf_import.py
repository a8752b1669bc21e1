"""A base model from a GGUF file, turned into the Hugging Face layout that mlx-lm loads.

GGUF is llama.cpp's container: metadata under llama.cpp's key names, tensors under its names,
most of them quantized (Q4_K, Q5_0, Q6_K, Q8_0, ...). Neither MLX's `mx.load` (Q4_0, Q4_1 and Q8_0
only) nor mlx-lm reads such a file for training, so this module undoes what llama.cpp's
`convert_hf_to_gguf.py` did:
- every tensor dequantized by llama.cpp's own `gguf` package;
- names mapped back (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`);
- the rotary row permutation of q/k that the converter applies for llama and mistral undone;
- the +1 that Gemma's RMSNorm weights carry in GGUF (llama.cpp computes x * w, Gemma x * (1 + w))
  taken off again;
- a tied output layer (no `output.weight`) kept tied, a separate one kept separate;
- config.json rebuilt from the metadata, with the values llama.cpp hard-codes for Gemma 3;
- the tokenizer built by transformers' GGUF tokenizer code (its converter, not its reader, which
  imports torch), saved as tokenizer.json + tokenizer_config.json, with the file's own chat
  template or, when it has none, its family's (farense.chat_templates).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from .chat_templates import TURN_TOKENS, family_name, template_for
from .errors import PipelineError

log = logging.getLogger(__name__)

ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma3")

# GGUF tensor name (inside blk.N.) -> Hugging Face module name (inside model.layers.N.)
_BLOCK_TENSORS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# Gemma 3 has four norms a block: llama.cpp's ffn_norm is its pre-feed-forward norm.
_GEMMA3_BLOCK_TENSORS = {
    **_BLOCK_TENSORS,
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_TOP_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# Gemma 3 values llama.cpp hard-codes rather than stores (src/llama-model.cpp, LLM_ARCH_GEMMA3):
# every sixth layer attends globally, local layers use rope base 10,000, and queries are scaled
# by 1/sqrt(head_dim), except the 27B model (62 layers), scaled by 1/sqrt(hidden / heads).
GEMMA3_SLIDING_WINDOW_PATTERN = 6
GEMMA3_ROPE_LOCAL_BASE = 10_000.0
GEMMA3_27B_LAYERS = 62


class GGUFFile:
    """The metadata and tensors of one GGUF file, with one-line errors naming the file."""

    def __init__(self, path: str | Path):
        from gguf import GGUFReader

        self.path = Path(path)
        if not self.path.is_file():
            raise PipelineError(f"{self.path}: no such GGUF file")
        try:
            self.reader = GGUFReader(self.path)
        except Exception as err:  # the reader raises ValueError, KeyError, IndexError... on bad bytes
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            with self.path.open("rb") as head:
                magic = head.read(4)
            # a cut file fails inside the reader (a short tensor or array), before the size check below
            if magic == b"GGUF":
                raise PipelineError(
                    f"{self.path}: truncated or corrupt GGUF file ({self.path.stat().st_size:,} bytes; {reason})"
                ) from None
            raise PipelineError(f"{self.path}: not a readable GGUF file ({reason})") from None
        size = self.path.stat().st_size
        end = max((t.data_offset + int(t.n_bytes) for t in self.reader.tensors), default=0)
        if end > size:
            raise PipelineError(f"{self.path}: truncated: its tensors need {end:,} bytes, the file has {size:,}")
        self.architecture = self.get("general.architecture")
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def arch(self, key: str, default=None):
        return self.get(f"{self.architecture}.{key}", default)

    def type_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(t.tensor_type.name for t in self.reader.tensors).items()))

    def array(self, name: str) -> np.ndarray:
        """One tensor dequantized to float32, in Hugging Face's (out, in) order."""
        from gguf import dequantize

        tensor = self.tensors[name]
        try:
            values = dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError:
            raise PipelineError(
                f"{self.path}: tensor {name} is of type {tensor.tensor_type.name}, which the gguf library cannot dequantize"
            ) from None
        # GGUF lists dimensions fastest first; numpy's row-major order wants them the other way round
        return np.asarray(values, dtype=np.float32).reshape(tuple(int(d) for d in reversed(tensor.shape)))


def model_type(gguf: GGUFFile) -> str:
    """The Hugging Face model_type: llama.cpp writes Mistral models as `llama` (transformers tells
    them apart by name the same way)."""
    arch = gguf.architecture
    if arch not in ("llama", "mistral", "qwen2", "gemma3"):
        raise PipelineError(
            f"{gguf.path}: architecture {arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})"
        )
    if arch == "llama" and "mistral" in str(gguf.get("general.name", "")).lower():
        return "mistral"
    return {"gemma3": "gemma3_text"}.get(arch, arch)


def _float(value) -> float:
    """A float32 from the file as the decimal it was written from (9.99999997e-07 -> 1e-06)."""
    return float(f"{float(value):.7g}")


def _rope_scaling(gguf: GGUFFile) -> dict | None:
    kind = gguf.arch("rope.scaling.type")
    if kind in (None, "none"):
        if "rope_freqs.weight" in gguf.tensors:
            raise PipelineError(f"{gguf.path}: llama-3 style rope frequencies (rope_freqs.weight) are not supported")
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": _float(gguf.arch("rope.scaling.factor"))}
    raise PipelineError(f"{gguf.path}: rope scaling {kind!r} is not supported (linear only)")


def hf_config(gguf: GGUFFile, vocab_size: int, eos_ids: list[int]) -> dict:
    """config.json for mlx-lm (and transformers) from the file's metadata."""
    mtype = model_type(gguf)
    hidden, heads = int(gguf.arch("embedding_length")), int(gguf.arch("attention.head_count"))
    layers = int(gguf.arch("block_count"))
    head_dim = int(gguf.arch("attention.key_length", hidden // heads))
    rope_dims = gguf.arch("rope.dimension_count")
    if rope_dims is not None and int(rope_dims) != head_dim:
        raise PipelineError(
            f"{gguf.path}: partial rotary embeddings ({rope_dims} of {head_dim} dims) are not supported"
        )
    config = {
        "model_type": mtype,
        "architectures": [
            {
                "llama": "LlamaForCausalLM",
                "mistral": "MistralForCausalLM",
                "qwen2": "Qwen2ForCausalLM",
                "gemma3_text": "Gemma3ForCausalLM",
            }[mtype]
        ],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": int(gguf.arch("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(gguf.arch("attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "rms_norm_eps": _float(gguf.arch("attention.layer_norm_rms_epsilon")),
        "rope_theta": _float(gguf.arch("rope.freq_base", 10_000.0)),
        "rope_scaling": _rope_scaling(gguf),
        "max_position_embeddings": int(gguf.arch("context_length", 4096)),
        "vocab_size": vocab_size,
        "tie_word_embeddings": "output.weight" not in gguf.tensors,
        "bos_token_id": gguf.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        "pad_token_id": gguf.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "bfloat16",
    }
    if mtype in ("llama", "mistral"):
        config.update(hidden_act="silu", attention_bias="blk.0.attn_q.bias" in gguf.tensors, mlp_bias=False)
    if mtype == "qwen2":
        config.update(hidden_act="silu", use_sliding_window=False)
    if mtype == "gemma3_text":
        config.update(
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=hidden // heads if layers == GEMMA3_27B_LAYERS else head_dim,
            sliding_window=int(gguf.arch("attention.sliding_window", 512)),
            sliding_window_pattern=GEMMA3_SLIDING_WINDOW_PATTERN,
            rope_local_base_freq=GEMMA3_ROPE_LOCAL_BASE,
        )
    return config


def unpermute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's LlamaModel.permute (rows of each head interleaved for llama.cpp's
    rotary layout); applies to q/k weights and biases."""
    rows = weights.shape[0]
    # forward: reshape(n_head, 2, rows/n_head/2, ...).swapaxes(1, 2); this is its inverse
    return weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def hf_tensor_name(gguf_name: str, mtype: str) -> str | None:
    """The Hugging Face name of a GGUF tensor, None for one mlx-lm has no use for."""
    stem, _, suffix = gguf_name.rpartition(".")  # suffix: weight or bias
    if stem.startswith("blk."):
        _, index, part = stem.split(".", 2)
        table = _GEMMA3_BLOCK_TENSORS if mtype == "gemma3_text" else _BLOCK_TENSORS
        module = table.get(part)
        return None if module is None else f"model.layers.{index}.{module}.{suffix}"
    module = _TOP_TENSORS.get(stem)
    return None if module is None else f"{module}.{suffix}"


def hf_tensors(gguf: GGUFFile, config: dict):
    """(name, float32 array) for every tensor, in Hugging Face's layout and convention."""
    mtype = config["model_type"]
    unknown = []
    for name in gguf.tensors:
        hf_name = hf_tensor_name(name, mtype)
        if hf_name is None:
            unknown.append(name)
            continue
        values = gguf.array(name)
        if mtype in ("llama", "mistral") and (".attn_q." in name or ".attn_k." in name):
            heads = config["num_attention_heads"] if ".attn_q." in name else config["num_key_value_heads"]
            values = unpermute_rotary(values, heads)
        if mtype == "gemma3_text" and name.endswith("norm.weight"):
            values = values - 1.0
        yield hf_name, values
    if unknown:
        raise PipelineError(f"{gguf.path}: tensors this importer does not know: {', '.join(unknown[:5])}")


def tokenizer_from_gguf(gguf: GGUFFile, mtype: str):
    """(transformers fast tokenizer, where its chat template came from), built the way
    transformers builds one from a GGUF, without its torch-importing reader."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer
    except ImportError:  # 5.17 has no such module (seen on the H200's image); requirements.txt pins 5.24.0
        raise PipelineError(
            f"{gguf.path}: transformers {transformers.__version__} lacks the GGUF tokenizer code this import needs "
            "(transformers.integrations.gguf.gguf_tokenizer_mapping); install transformers==5.24.0 (requirements.txt)"
        ) from None

    grouped = {
        group: {
            name: gguf.get(f"tokenizer.{key}")
            for key, name in renames.items()
            if f"tokenizer.{key}" in gguf.reader.fields
        }
        for group, renames in GGUF_TOKENIZER_MAPPING.items()
    }
    tokenizer_dict, tokenizer_config = grouped["tokenizer"], grouped["tokenizer_config"]
    if "tokens" not in tokenizer_dict:
        raise PipelineError(f"{gguf.path}: holds no tokenizer (no tokenizer.ggml.tokens)")
    if tokenizer_dict.get("tokenizer_type") == "llama":
        # as transformers: llama.cpp adds BOS to a sentencepiece vocabulary that does not say otherwise
        tokenizer_config.setdefault("add_bos_token", True)
    tokens = tokenizer_dict["tokens"]
    for name, key in (
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unknown_token_id"),
        ("pad_token", "padding_token_id"),
    ):
        index = gguf.get(f"tokenizer.ggml.{key}")
        if index is not None:
            tokenizer_config[name] = tokens[index]
    try:
        backend, _ = convert_gguf_tokenizer(gguf.architecture, tokenizer_dict)
    except (ValueError, KeyError) as err:
        raise PipelineError(f"{gguf.path}: its tokenizer cannot be built: {err}") from None
    source = "the GGUF file"
    if not tokenizer_config.get("chat_template"):
        template = template_for(mtype)
        missing = [t for t in TURN_TOKENS.get(template, ()) if t not in tokens]
        if missing:
            raise PipelineError(
                f"{gguf.path}: has no chat template, and its vocabulary lacks {missing[0]} of the {family_name(mtype)} format"
            )
        tokenizer_config["chat_template"] = template
        source = f"the {family_name(mtype)} format (the file has none)"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False, **tokenizer_config
    )
    tokenizer.model_max_length = int(gguf.arch("context_length", 4096))
    return tokenizer, source


def eos_ids(tokenizer, mtype: str) -> list[int]:
    """End-of-sequence ids: the file's EOS, and for a turn format the token that closes a turn
    (Gemma's generation_config lists <eos> and <end_of_turn>), so generation stops there."""
    ids = [tokenizer.eos_token_id]
    for token in TURN_TOKENS.get(template_for(mtype), ())[1:]:
        index = tokenizer.convert_tokens_to_ids(token)
        if index is not None and index not in ids and index != tokenizer.unk_token_id:
            ids.append(index)
    return ids


def file_type_name(file_type) -> str | None:
    """llama.cpp's name of the file's quantization mix (general.file_type 15: Q4_K_M)."""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        return None


def import_gguf(path: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> dict:
    """Write the model of GGUF `path` into the folder `out_dir` as safetensors in `dtype`,
    config.json, generation_config.json and the tokenizer files; returns a summary."""
    import mlx.core as mx
    from mlx_lm.utils import _get_classes, save_config, save_model

    gguf = GGUFFile(path)
    mtype = model_type(gguf)
    tokenizer, template_source = tokenizer_from_gguf(gguf, mtype)
    embedding_rows = (
        int(gguf.tensors["token_embd.weight"].shape[1]) if "token_embd.weight" in gguf.tensors else len(tokenizer)
    )
    config = hf_config(gguf, int(gguf.arch("vocab_size", embedding_rows)), eos_ids(tokenizer, mtype))
    target = getattr(mx, dtype)
    weights = {name: mx.array(values).astype(target) for name, values in hf_tensors(gguf, config)}
    # Loaded into mlx-lm's own model class, strictly: a name or shape the mapping got wrong stops here.
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    try:
        model.load_weights(
            list(model.sanitize(weights).items()) if hasattr(model, "sanitize") else list(weights.items())
        )
    except ValueError as err:
        raise PipelineError(f"{gguf.path}: its tensors do not fit mlx-lm's {mtype} model: {err}") from None
    del weights
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, model, donate_model=True)
    save_config(config, config_path=out / "config.json")
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if config.get(k) is not None}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(str(out))
    return {
        "kind": "gguf",
        "architecture": gguf.architecture,
        "model_type": mtype,
        "name": gguf.get("general.name"),
        "file_type": gguf.get("general.file_type"),
        "file_type_name": file_type_name(gguf.get("general.file_type")),
        "tensor_types": gguf.type_counts(),
        "tensors": len(gguf.tensors),
        "parameters": int(sum(int(np.prod(t.shape)) for t in gguf.reader.tensors)),
        "dtype": dtype,
        "tied_embeddings": config["tie_word_embeddings"],
        "chat_template": template_source,
        "vocab_size": config["vocab_size"],
    }
