"""mlx-lm's OpenAI-compatible server with bounds in front of it, for serving the adapter on
loopback to a backend under load (scripts/cli/serve_qlora.py).

mlx-lm's own server (`mlx_lm.server`, as the README first documented it), measured on the tiny
model on 2 busy CPU cores:
- 32 clients connecting at once: 3 of 200 requests were reset without an HTTP answer. Python's
  HTTP server listens with a backlog of 5 connections (socketserver's request_queue_size); Linux
  counted 40 overflows of that queue.
- one 100 KB prompt: no answer after 300 s, the server's memory grown from 91 to 488 MB, and
  every other request waiting behind it (generation runs in one thread); 10 KB took 18 s.
- a request body that is not UTF-8: the handler thread dies (UnicodeDecodeError, which its
  JSON error handling does not catch) and the client gets no answer.
- a message part `image_url`: the server downloads the URL (30 s timeout); for a text model that
  is only a way to make it open any address.
- a client that sends its headers and then nothing holds a thread for ever (no socket timeout);
  any web page may call it (Access-Control-Allow-Origin: * by default).

This module keeps mlx-lm's server, handler and generation (its `run` takes the server and handler
classes as parameters) and adds in front:
- a listen backlog of LISTEN_BACKLOG connections;
- at most `max_in_flight` requests at once; one more is refused at once with 503 and Retry-After;
- a body over `max_body_bytes` is refused with 413 without being kept;
- a body that is not UTF-8 JSON, messages that are not text, an empty prompt, a prompt over
  farense.prompt_limits.MAX_PROMPT_BYTES (413) or, with max_tokens, over the model's context
  (400) are refused before they reach the generation thread;
- a socket timeout: a client that stops sending (or reading) frees its slot;
- no cross-origin calls unless `--allowed-origins` names them.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from .artifact_checks import check_adapter_dir, check_model_dir
from .errors import PipelineError
from .prompt_limits import MAX_PROMPT_BYTES, PromptRefused, check_context, prompt_text


# Connections the kernel queues before the server accepts them: at least the burst a backend
# sends at once (32 clients in the load test; 5 by default reset some of them). Linux caps it at
# net.core.somaxconn (4096 here).
LISTEN_BACKLOG = 256
# Requests at once: twice the 32 sequences mlx-lm decodes together (--decode-concurrency), so
# that one batch runs while the next waits, and no more: each waiting request holds a thread, its
# body (up to max_body_bytes) and, once admitted, its prompt's cache. In the load test (tiny
# model) 32 clients at once peaked at 135 MB RSS against 91 MB idle.
MAX_IN_FLIGHT = 64
# A request body: the largest prompt (MAX_PROMPT_BYTES) written as JSON with every non-ASCII
# character escaped (\u00e9: 6 bytes for 2 of UTF-8), rounded up.
MAX_BODY_BYTES = 1 << 20
# Seconds a client may leave the connection idle while it sends its request or reads the answer;
# waiting for the answer to be generated does not count.
SOCKET_TIMEOUT = 30.0
# A body over max_body_bytes is read and dropped, up to this many times that size (16 MiB, a few
# milliseconds on loopback), before the connection closes: a client that writes its whole request
# before reading (Python's http.client, curl without Expect) then gets the 413 instead of a
# reset; a larger one gets the reset.
DRAIN_FACTOR = 16
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
TEXT_PATHS = ("/v1/completions",)


@dataclass(frozen=True)
class Limits:
    max_in_flight: int = MAX_IN_FLIGHT
    max_body_bytes: int = MAX_BODY_BYTES
    max_prompt_bytes: int = MAX_PROMPT_BYTES
    socket_timeout: float = SOCKET_TIMEOUT
    context: int | None = None  # the model's context in tokens; None: not checked


class BoundedHTTPServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


def message_texts(body: dict, path: str) -> list[str]:
    """The texts of a request's prompt: the messages' contents (text only: a string or parts of
    type "text") or the completion prompt; else PromptRefused saying what is wrong."""
    if path in TEXT_PATHS:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise PromptRefused("'prompt' must be a string")
        return [prompt]
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise PromptRefused("'messages' must be a non-empty list")
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise PromptRefused(f"messages[{i}] must be an object with a 'role'")
        content = message.get("content")
        parts = [content] if isinstance(content, str) else content if isinstance(content, list) else None
        if parts is None:
            raise PromptRefused(f"messages[{i}].content must be text")
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise PromptRefused(f"messages[{i}].content: this model reads text only (no images, audio or URLs)")
    return texts


def make_handler(base, limits: Limits, count_tokens=None):
    """A subclass of mlx-lm's APIHandler `base` that enforces `limits`; count_tokens(body, path)
    gives a request's prompt tokens (None: the context is not checked)."""
    slots = threading.BoundedSemaphore(limits.max_in_flight)

    class BoundedHandler(base):
        timeout = limits.socket_timeout  # StreamRequestHandler sets it on the connection

        def refuse(self, status: int, message: str, retry_after: int | None = None) -> None:
            payload = json.dumps({"error": message}).encode()  # the shape of mlx-lm's own refusals
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True

        def drain(self, length: int) -> None:
            """Read and drop a refused body (at most DRAIN_FACTOR times max_body_bytes), so that a
            client that sends it whole before reading gets the refusal rather than a reset."""
            left = min(length, DRAIN_FACTOR * limits.max_body_bytes)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)

        def do_POST(self):
            length = (self.headers.get("Content-Length") or "").strip()
            if not slots.acquire(blocking=False):
                return self.refuse(503, f"busy: {limits.max_in_flight} requests in progress; try again", retry_after=1)
            try:
                if length.isdigit() and int(length) > limits.max_body_bytes:
                    self.refuse(
                        413, f"request body of {int(length):,} bytes; at most {limits.max_body_bytes:,} are taken"
                    )
                    return self.drain(int(length))
                if length.isdigit() and self.path in CHAT_PATHS + TEXT_PATHS:
                    raw = self.rfile.read(int(length))
                    problem = self.check(raw)
                    if problem is not None:
                        return self.refuse(*problem)
                    self.rfile = io.BytesIO(raw)  # mlx-lm's handler reads the body again from here
                super().do_POST()
            except TimeoutError:  # the client stopped sending or reading
                self.close_connection = True
            finally:
                slots.release()

        def check(self, raw: bytes) -> tuple[int, str] | None:
            """(status, message) for a request refused before it reaches mlx-lm, else None."""
            try:
                body = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                return 400, f"request body is not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})"
            except json.JSONDecodeError as err:
                return 400, f"request body is not JSON ({err.msg} at offset {err.pos})"
            if not isinstance(body, dict):
                return 400, "request body must be a JSON object"
            try:
                texts = message_texts(body, self.path)
                prompt_text("\n".join(texts), limits.max_prompt_bytes)
                max_tokens = (
                    body.get("max_completion_tokens")
                    or body.get("max_tokens")
                    or self.response_generator.cli_args.max_tokens
                )
                if count_tokens is not None and isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
                    check_context(count_tokens(body, self.path), max_tokens, limits.context)
            except PromptRefused as err:
                return err.status, str(err)
            return None

    return BoundedHandler


def model_context(model_path: str) -> int | None:
    """max_position_embeddings from a local model folder's config.json (a Gemma 3 vision model:
    its text_config's)."""
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    value = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def token_counter(model_path: str, chat_template_args: dict | None = None):
    """count(body, path): the prompt's tokens as mlx-lm's server will make them (the chat template,
    or the plain prompt), with a tokenizer of its own, used under a lock by one request at a
    time; None where the model is no local folder."""
    if not Path(model_path).is_dir():
        return None
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(Path(model_path))
    lock = threading.Lock()

    def count(body: dict, path: str) -> int:
        with lock:
            if path in TEXT_PATHS:
                return len(tokenizer.encode(body["prompt"]))
            messages = [
                {
                    "role": m["role"],
                    "content": m["content"]
                    if isinstance(m["content"], str)
                    else "".join(p.get("text", "") for p in m["content"]),
                }
                for m in body["messages"]
            ]
            try:
                return len(
                    tokenizer.apply_chat_template(messages, add_generation_prompt=True, **(chat_template_args or {}))
                )
            except Exception as err:  # the template refuses these roles or this order
                raise PromptRefused(
                    f"the chat template refuses these messages: {' '.join(str(err).split())[:200]}"
                ) from None

    return count


def main(argv: list[str] | None = None) -> None:
    """`python scripts/cli/serve_qlora.py [our options] [mlx_lm.server's options]`: mlx-lm's server
    (all its options) with the bounds above, on the pipeline's int4 base and QLoRA adapter unless
    --model is given."""
    from .inference import resolve

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--adapter", choices=["qlora", "lora", "none"], default="qlora")
    parser.add_argument("--results", default="results")
    parser.add_argument("--max-in-flight", type=int, default=MAX_IN_FLIGHT)
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--max-prompt-bytes", type=int, default=MAX_PROMPT_BYTES)
    parser.add_argument("--socket-timeout", type=float, default=SOCKET_TIMEOUT)
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        print(
            "Options of this script: --adapter qlora|lora|none, --results DIR, --max-in-flight N, --max-body-bytes N, "
            "--max-prompt-bytes N, --socket-timeout S; then mlx_lm.server's:\n"
        )
    ours, rest = parser.parse_known_args(argv)
    asks_help = bool({"-h", "--help"} & set(argv))
    try:
        # --help: mlx_lm.server's own help, whether or not an adapter has been trained yet
        if not asks_help and not any(a == "--model" or a.startswith("--model=") for a in rest):
            model_path, adapter_path = resolve(Path(ours.results), ours.adapter, None)
            rest = ["--model", model_path, *(["--adapter-path", adapter_path] if adapter_path else []), *rest]
        given = argparse.ArgumentParser(add_help=False)
        given.add_argument("--model")
        given.add_argument("--adapter-path")
        named = given.parse_known_args(rest)[0]
        if named.model:  # damaged files named in one line before mlx-lm loads them (farense.artifact_checks)
            check_model_dir(named.model)
        if named.adapter_path:
            check_adapter_dir(named.adapter_path)
    except PipelineError as err:
        raise SystemExit(f"error: {err}") from None
    if not any(a == "--allowed-origins" or a.startswith("--allowed-origins=") for a in rest):
        rest = ["--allowed-origins", "", *rest]  # mlx-lm's default "*" lets any web page call the server

    from mlx_lm import server as mlx_server

    def bounded_run(host, port, model_provider, **_):
        args = model_provider.cli_args
        limits = Limits(
            ours.max_in_flight,
            ours.max_body_bytes,
            ours.max_prompt_bytes,
            ours.socket_timeout,
            model_context(args.model),
        )
        handler = make_handler(mlx_server.APIHandler, limits, token_counter(args.model, args.chat_template_args))
        logging.info("bounds: %s", limits)
        serve(host, port, model_provider, handler)

    # mlx-lm's main() parses its own options (all of them, whatever its version) and calls the
    # module's run(); this process hands it ours. (mlx-lm's run takes server_class and
    # handler_class parameters but, in 0.32.2, does not pass them on: it always serves with its
    # own classes.)
    mlx_server.run = bounded_run
    sys.argv = [sys.argv[0], *rest]
    mlx_server.main()


def serve(host: str, port: int, model_provider, handler_class) -> None:
    """What mlx_lm.server.run does on one process, with BoundedHTTPServer and `handler_class`:
    one generation thread (mlx-lm's ResponseGenerator) behind the HTTP threads."""
    import socket

    from mlx_lm.server import LRUPromptCache, ResponseGenerator, get_system_fingerprint

    generator = ResponseGenerator(model_provider, LRUPromptCache(model_provider.cli_args.prompt_cache_size))
    fingerprint = get_system_fingerprint()
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server_class = type("BoundedServer", (BoundedHTTPServer,), {"address_family": family})
    httpd = server_class(address, lambda *a, **kw: handler_class(generator, *a, system_fingerprint=fingerprint, **kw))
    logging.info("serving on %s port %d", host, port)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        httpd.shutdown()
        generator.stop_and_join()
