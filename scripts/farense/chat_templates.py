"""Chat templates by model family, for a base model that ships none (Mistral-7B-v0.1, Gemma 3's
pretrained GGUF, the tiny model): each family gets its own turn format, never another family's.
A model whose tokenizer has a template keeps it."""

from __future__ import annotations

# Mistral-instruct style, as Mistral-7B-Instruct writes it: a system message goes in front of
# the first user turn; each assistant turn ends with </s>. Llama 2's chat format is the same.
MISTRAL_INSTRUCT = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + ((system + '\n\n') if loop.first and system else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)

# Gemma's turn format, as google/gemma-3-*-it writes it for text: roles "user" and "model", each
# turn closed by <end_of_turn>, a system message folded into the first user turn.
GEMMA = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] + '\n\n' if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (system if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# ChatML, the format of Qwen2's instruct models.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# model_type (config.json) -> template
BY_MODEL_TYPE = {
    "mistral": MISTRAL_INSTRUCT,
    "llama": MISTRAL_INSTRUCT,
    "gemma": GEMMA,
    "gemma2": GEMMA,
    "gemma3": GEMMA,
    "gemma3_text": GEMMA,
    "qwen2": CHATML,
}

# The tokens each template writes that must be single special tokens of the vocabulary.
TURN_TOKENS = {GEMMA: ("<start_of_turn>", "<end_of_turn>"), CHATML: ("<|im_start|>", "<|im_end|>")}


def template_for(model_type: str) -> str:
    """The family's own template; the Mistral-instruct one for a family not listed."""
    return BY_MODEL_TYPE.get(model_type, MISTRAL_INSTRUCT)


def ensure_chat_template(tokenizer, model_type: str, log=None) -> bool:
    """Give `tokenizer` its family's template when it has none; True when one was added."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = template_for(model_type)
    if log is not None:
        log.info("the tokenizer has no chat template: using the %s turn format", family_name(model_type))
    return True


def ensure_folder_chat_template(model_dir, log=None) -> bool:
    """Write its family's template into a saved model folder whose tokenizer has none (as
    chat_template.jinja, where transformers looks); True when one was written."""
    import json
    from pathlib import Path

    model_dir = Path(model_dir)
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    if (model_dir / "chat_template.jinja").exists() or tokenizer_config.get("chat_template"):
        return False
    model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["model_type"]
    (model_dir / "chat_template.jinja").write_text(template_for(model_type), encoding="utf-8")
    if log is not None:
        log.info("the base has no chat template: added the %s one", family_name(model_type))
    return True


def family_name(model_type: str) -> str:
    template = template_for(model_type)
    return {GEMMA: "Gemma", CHATML: "ChatML"}.get(template, "Mistral-instruct ([INST] ... [/INST])")
