"""Ask the trained Farense model a question.

    python scripts/cli/inference_qlora.py "Qual foi a melhor classificação do Farense?"
    python scripts/cli/inference_qlora.py --json --max-tokens 100 "Quem foi Hassan Nader?"
    python scripts/cli/inference_qlora.py --json - < pergunta.txt      # the prompt on standard input

Loads the int4 base with the QLoRA adapter the pipeline made (--adapter lora: the LoRA one on
the unquantized base; none: the int4 base alone; --fused DIR: a model made by mlx_lm.fuse).
With --json it prints one JSON object (prompt, response, model, adapter, tokens, seconds,
status), errors included, for a backend that calls the script. Exit status 0 on success.
A prompt that is not UTF-8, empty, over 256 KiB, or with --max-tokens over the model's context
is refused with a clear error (farense.prompt_limits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _farense_path  # noqa: F401 (first: puts scripts/ on sys.path for the farense package)
import farense.quiet_transformers  # noqa: F401 (next: before transformers is imported)
from farense.preload import blas  # noqa: F401 (loads the BLAS before mlx is imported)
from farense.errors import PipelineError
from farense.inference import answer, load, resolve
from farense.prompt_limits import printable, prompt_text, read_limited


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "prompt",
        help="the question, in Portuguese; - reads it from standard input (a command-line argument holds at most 128 KiB)",
    )
    parser.add_argument(
        "--adapter", choices=["qlora", "lora", "none"], default="qlora", help="which adapter (default qlora)"
    )
    parser.add_argument("--fused", metavar="DIR", help="a fused model directory instead of base + adapter")
    parser.add_argument("--max-tokens", type=int, default=200, help="most tokens to generate (default 200)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 for greedy decoding (default)")
    parser.add_argument("--system", default="", help="an optional system message")
    parser.add_argument("--results", default="results", help="the pipeline's results folder (default results)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = {
        "prompt": None,
        "response": None,
        "model": None,
        "adapter": None,
        "tokens": 0,
        "seconds": None,
        "status": "ok",
    }
    raw = None
    try:
        raw = read_limited(sys.stdin.buffer) if args.prompt == "-" else args.prompt
        prompt = prompt_text(raw)  # checked before the model is loaded: UTF-8, not empty, size
        out["prompt"] = prompt
        if args.max_tokens < 1:
            raise PipelineError("--max-tokens must be at least 1")
        model_path, adapter_path = resolve(Path(args.results), args.adapter, args.fused)
        out.update(model=model_path, adapter=adapter_path)
        result = answer(load(model_path, adapter_path), prompt, args.max_tokens, args.temperature, args.system)
        out.update(result)
    except PipelineError as err:
        # the prompt echoed printable and short: no invalid bytes, no 100 kB back to the caller
        out.update(status="error", error=str(err), prompt=None if raw is None else printable(raw))
    out["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    elif out["status"] == "ok":
        print(out["response"])
    else:
        print(f"error: {out['error']}", file=sys.stderr)
    return 0 if out["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
