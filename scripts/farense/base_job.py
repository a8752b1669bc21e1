"""The build_base_model job, described by plain data (paths and settings): results/models/base/ in
Hugging Face layout, either the tiny model built offline (a tokenizer trained on the corpus, then
pretraining on the training split) or a GGUF file (a path, or one a package carries) imported."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .base_model import packaged_gguf
from .run_record import peak_memory_gb, write_run
from .split_lines import read_split
from .textio import atomic_dir


def train_texts(path, schema):
    """The training split as plain text: what the base may see (never valid or test); its lines
    checked against the JSONL schema (a line edited by hand: one line naming it)."""
    texts = []
    for obj in read_split(path, schema):
        if "messages" in obj:
            texts.append("\n".join(m["content"] for m in obj["messages"] if m["role"] != "system"))
        elif "prompt" in obj:
            texts.append(f"{obj['prompt']}\n{obj['completion']}")
        else:
            texts.append(obj["text"])
    return texts


def build_tiny(job: dict, tmp: Path, log) -> tuple[dict, dict]:
    import pyarrow.parquet as pq

    from .tiny_model import TinyModelOptions, build_tiny_model
    from .tokenizer_build import train_tokenizer

    options = TinyModelOptions.from_config(dict(job["tiny"]))
    corpus = pq.read_table(job["corpus"], columns=["text"]).column("text").to_pylist()
    tokenizer = train_tokenizer(corpus, options.vocab_size, tmp)
    log.info("tokenizer: %d tokens trained on %d documents", len(tokenizer), len(corpus))
    summary, speed = build_tiny_model(train_texts(job["train"], job["schema"]), tmp, options, tokenizer)
    log.info("tiny base model: %.2fM parameters", summary["parameters"] / 1e6)
    measured = {
        "pretrain_speed": speed,
        "pretrain_tokens_per_second": speed[-1]["tokens_per_second"] if speed else None,
    }
    return summary, measured


def import_base(spec: dict, tmp: Path, log) -> tuple[dict, dict]:
    from .gguf_import import import_gguf
    from .provenance import sha256_file

    if spec["kind"] == "package":
        # the package's parts joined into one file beside the output, removed once imported
        path, sha256, name = packaged_gguf(spec["name"], tmp.with_name(tmp.name + ".gguf"))
    else:
        path, name = Path(spec["path"]), spec["path"]
        sha256 = sha256_file(path)
    try:
        log.info("importing %s (sha256 %s)", path, sha256)
        summary = import_gguf(path, tmp)
    finally:
        if spec["kind"] == "package":
            path.unlink(missing_ok=True)
    summary.update(gguf=name, gguf_sha256=sha256)
    log.info(
        "%s (%s): %d tensors %s -> %s, chat template from %s",
        summary["name"],
        summary["architecture"],
        summary["tensors"],
        summary["tensor_types"],
        summary["dtype"],
        summary["chat_template"],
    )
    return summary, {}


def run(job: dict, log, blas: str | None) -> None:
    """Build what `job` describes: keys base (the resolved model.base), tiny (model.tiny), corpus,
    train and schema (the tiny model's inputs; None otherwise), model and run (the output paths)."""
    spec = dict(job["base"])
    if spec.get("auto"):
        log.info("model.base auto -> %s: %s", spec["name"], spec["auto"])
    started = time.perf_counter()
    with atomic_dir(job["model"]) as tmp:  # whole or not at all
        summary, measured = build_tiny(job, tmp, log) if spec["kind"] == "tiny" else import_base(spec, tmp, log)
        summary["base"] = spec
        # what the seed and the source decide; the speed of this run goes to the run record
        (tmp / "farense_base.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_run(
        job["run"],
        {
            "job": "build_base_model",
            "seconds": round(time.perf_counter() - started, 2),
            **measured,
            "peak_memory_gb": peak_memory_gb(),
        },
        blas,
    )
    log.info("base model -> %s", job["model"])
