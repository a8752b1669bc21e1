"""What a prompt must be before the model sees it, in the inference script and in the server
(farense.serving): text (valid UTF-8), not empty, at most MAX_PROMPT_BYTES, and, with the tokens
asked for, within the model's context.

Why caps: mlx-lm takes any prompt, and its cost grows with the square of its length. Measured
with mlx-lm's own server on the tiny model (2 busy CPU cores): a 10 KB prompt took 18 s; a 100 KB
one had no answer after 300 s, with the server's memory grown from 91 to 488 MB, and every other
request waiting behind it (the server generates in one thread).
"""

from __future__ import annotations

from .errors import PipelineError

# At most 256 KiB of prompt text. Gemma 3 270M's tokenizer reads the Farense corpus at 3.46 bytes a
# token, so its 32,768-token context holds about 113 KB of such text (the tiny model's 2,048
# tokens, at 2.16 bytes a token: 4.4 KB). Twice the larger still refuses a 1 MB prompt before
# it is tokenized (1.4 s for 1 MB with the tiny model's tokenizer, here). A command line cannot
# carry more than 128 KiB in one argument anyway (Linux's MAX_ARG_STRLEN): longer prompts come
# on standard input (`-`).
MAX_PROMPT_BYTES = 256 * 1024


class PromptRefused(PipelineError):
    """A prompt the model is not given; `status` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def prompt_text(raw: str | bytes, limit: int = MAX_PROMPT_BYTES) -> str:
    """The prompt as text: bytes decoded as UTF-8 (a command-line argument, which Python decodes
    with surrogate escapes, checked the same way); else PromptRefused saying why."""
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raw = raw.encode("utf-8", "surrogateescape")  # the bytes given, to say which is wrong
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PromptRefused(
                f"the prompt is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start})"
            ) from None
    if not raw.strip():
        raise PromptRefused("the prompt is empty")
    size = len(raw.encode("utf-8"))
    if size > limit:
        raise PromptRefused(f"the prompt is {size:,} bytes, more than the {limit:,} taken", status=413)
    return raw


def read_limited(stream, limit: int = MAX_PROMPT_BYTES) -> bytes:
    """A prompt from a binary stream (standard input): one byte over the cap is read at most,
    enough to refuse a larger one without holding it."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PromptRefused(f"the prompt on standard input is more than {limit:,} bytes", status=413)
    return data


def printable(raw: str | bytes, keep: int = 200) -> str:
    """A prompt fit to echo back (in --json output): invalid bytes as U+FFFD, at most `keep`
    characters and an ellipsis."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= keep else text[:keep] + "…"


def context_length(model) -> int | None:
    """The model's context in tokens (max_position_embeddings), None when its config has none."""
    value = getattr(getattr(model, "args", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_context(prompt_tokens: int, max_tokens: int, context: int | None) -> None:
    """The prompt and the tokens asked for must fit the model's context (as OpenAI's API refuses a
    request whose prompt plus max_tokens exceed it)."""
    if context is not None and prompt_tokens + max_tokens > context:
        raise PromptRefused(
            f"the prompt is {prompt_tokens:,} tokens; with {max_tokens:,} to generate that is more than the model's context of {context:,} tokens"
        )
