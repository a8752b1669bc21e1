"""A byte-level BPE tokenizer trained on the cleaned corpus, saved like a Hugging Face one."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .chat_templates import MISTRAL_INSTRUCT

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
INST_OPEN, INST_CLOSE = "[INST]", "[/INST]"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> PreTrainedTokenizerFast:
    """Train on `texts` and save tokenizer.json, tokenizer_config.json and the special tokens map."""
    bpe = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=False))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[UNK, BOS, EOS, PAD, INST_OPEN, INST_CLOSE],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = MISTRAL_INSTRUCT  # the tiny model is of the Mistral family
    tokenizer.model_max_length = 4096
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer
