"""Answers from the trained model: the int4 base with the QLoRA adapter (or the LoRA one, or a
fused model), loaded once, asked with the chat template."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .artifact_checks import load_model, read_json
from .chat_templates import ensure_chat_template
from .errors import PipelineError
from .prompt_limits import check_context, context_length, prompt_text


@dataclass
class Loaded:
    model: object
    tokenizer: object
    model_path: str
    adapter_path: str | None
    context: int | None = None  # tokens (max_position_embeddings); None: the config gives none


def resolve(results: Path, adapter: str, fused: str | None) -> tuple[str, str | None]:
    """(model path, adapter path) for an adapter name: qlora on the int4 base, lora on the base
    it was trained on, none for the int4 base alone; or a fused model directory."""
    if fused:
        if not (Path(fused) / "config.json").exists():
            raise PipelineError(f"no fused model in {fused} (make one with mlx_lm.fuse, see the README)")
        return fused, None
    int4 = results / "models" / "base-int4"
    if adapter == "none":
        if not (int4 / "config.json").exists():
            raise PipelineError(f"no int4 model in {int4} yet: run `snakemake --cores 1 results/models/base-int4`")
        return str(int4), None
    adapter_dir = results / "adapters" / adapter
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.exists() or not (adapter_dir / "adapters.safetensors").exists():
        raise PipelineError(
            f"no trained {adapter} adapter in {adapter_dir} yet: run `snakemake --cores 1 results/adapters/{adapter}`"
        )
    config = read_json(config_file, "adapter configuration")
    model_path = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_path, str):
        raise PipelineError(f"{config_file}: damaged adapter configuration: it names no base model ('model')")
    if not Path(model_path).exists() and not Path(model_path).is_absolute() and "/" not in model_path:
        raise PipelineError(f"the base model of {adapter_dir} ({model_path}) is not there")
    return model_path, str(adapter_dir)


def load(model_path: str, adapter_path: str | None) -> Loaded:
    """The model (and adapter) loaded once; a damaged file in either folder is one PipelineError
    naming it (farense.artifact_checks)."""
    from .compute import prepare

    model, tokenizer = load_model(model_path, adapter_path)
    context = context_length(model)
    model, _ = prepare(model, "auto", training=False)  # on a CPU, float32 is 10-20x faster than int4 kernels
    ensure_chat_template(tokenizer, model.model_type)  # a hub base such as Mistral-7B-v0.1 ships none
    return Loaded(model, tokenizer, model_path, adapter_path, context)


def answer(loaded: Loaded, question: str, max_tokens: int = 200, temperature: float = 0.0, system: str = "") -> dict:
    """Generate an answer; returns the response with token count and timings. A prompt that is
    empty, too large, or with max_tokens over the model's context is refused (PromptRefused)."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    question = prompt_text(question)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prompt = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    check_context(len(prompt), max_tokens, loaded.context)
    sampler = make_sampler(temp=temperature)
    start = time.perf_counter()
    text, tokens, first = "", 0, None
    for response in stream_generate(loaded.model, loaded.tokenizer, prompt, max_tokens=max_tokens, sampler=sampler):
        if first is None:
            first = time.perf_counter() - start
        text += response.text
        tokens = response.generation_tokens
    seconds = time.perf_counter() - start
    return {
        "response": text.strip(),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "time_to_first_token": round(first or seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
    }
