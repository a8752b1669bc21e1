"""Rule script for build_base_model: the tiny default base model, offline, in Hugging Face layout."""

from farense.fastblas import use_fast_blas

blas = use_fast_blas()  # before mlx is imported

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402

from farense.runlog import stage  # noqa: E402
from farense.tiny_model import TinyModelOptions, build_tiny_model  # noqa: E402
from farense.tokenizer_build import train_tokenizer  # noqa: E402

smk = snakemake  # noqa: F821 (injected by Snakemake)


def train_texts(path):
    """The training split as plain text: what the base may see (never valid or test)."""
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            obj = json.loads(line)
            if "messages" in obj:
                texts.append("\n".join(m["content"] for m in obj["messages"] if m["role"] != "system"))
            elif "prompt" in obj:
                texts.append(f"{obj['prompt']}\n{obj['completion']}")
            else:
                texts.append(obj["text"])
    return texts


with stage(smk) as log:
    log.info("BLAS: %s", blas)
    options = TinyModelOptions.from_config(dict(smk.params.tiny))
    out = Path(smk.output.model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    corpus = pq.read_table(smk.input.corpus, columns=["text"]).column("text").to_pylist()
    tokenizer = train_tokenizer(corpus, options.vocab_size, tmp)
    log.info("tokenizer: %d tokens trained on %d documents", len(tokenizer), len(corpus))
    summary = build_tiny_model(train_texts(smk.input.train), tmp, options, tokenizer)
    summary["blas"] = blas
    (tmp / "farense_base.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # whole or not at all
    log.info("tiny base model: %.2fM parameters -> %s", summary["parameters"] / 1e6, out)
