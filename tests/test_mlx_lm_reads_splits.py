"""mlx-lm's own dataset loader reads the JSONL files in every format (with a small real tokenizer)."""

import json
import types

import pytest
from mlx_lm.tuner.datasets import load_local_dataset
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from conftest import ROOT
from farense.split_options import SplitOptions
from farense.splitting import split_jsonl

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(built_data):
    texts = [
        json.dumps(json.loads(line), ensure_ascii=False)
        for line in (built_data / "results/data/train.jsonl").read_text().splitlines()
    ]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.mark.parametrize("fmt", ["text", "completions", "chat"])
def test_mlx_lm_loads_and_tokenizes_every_line(built_data, tokenizer, tmp_path, fmt):
    records = built_data / "results/data/records.parquet"
    options = SplitOptions(format=fmt)
    split_jsonl(records, tmp_path, tmp_path / "stats.json", ROOT / f"config/schemas/jsonl_{fmt}.schema.yaml", options)
    config = types.SimpleNamespace(mask_prompt=fmt != "text")
    datasets = load_local_dataset(tmp_path, tokenizer, config)
    for dataset in datasets:
        assert len(dataset) > 0
        for i in range(len(dataset)):
            tokens, offset = dataset.process(dataset[i])
            assert len(tokens) > 0
            if fmt != "text":
                assert 0 < offset < len(tokens)  # the prompt is masked, the answer is learnt
