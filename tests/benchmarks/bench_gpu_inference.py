"""Benchmark of generation with the Mistral-7B shape on a GPU: int4 with a LoRA adapter against
the same model in bfloat16.

    python tests/benchmarks/bench_gpu_inference.py --variants int4+lora int4 bf16 bf16+lora \
        --prompt 512 --tokens 256 --repeats 3 --json results.jsonl
    python tests/benchmarks/bench_gpu_inference.py --shape tiny ...   # a smoke test on a CPU

The models are built as in bench_gpu_training.py (mlx-lm's llama/mistral Model with random
weights; int4 = nn.quantize, 4 bits, group size 64); "+lora" adds mlx-lm LoRA layers (rank 8,
scale 2, q/k/v of every block, unfused, as mlx_lm.load(..., adapter_path=...) gives) with random
non-zero B matrices, so that the adapter takes part. Generation is mlx-lm's own
mlx_lm.generate.generate_step on token ids (greedy; no tokenizer needed), batch 1:
- time to first token: from the call to the first token yielded (the prompt's prefill and one
  sampled token);
- generation tokens/s: the tokens after the first over the time after the first.
One warm-up generation per model (kernel compilation), then --repeats timed ones: the median is
printed. Peak memory is mx.get_peak_memory() over the timed generations, weights included.
Not part of the test suite: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu_training import SHAPES, build, describe_machine  # noqa: E402  (also picks the BLAS first)

import mlx.core as mx  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.tuner.lora import LoRALinear  # noqa: E402

VARIANTS = {"int4+lora": ("int4", True), "int4": ("int4", False), "bf16": ("bf16", False), "bf16+lora": ("bf16", True)}


def greedy(logprobs):
    return mx.argmax(logprobs, axis=-1)


def generate_once(model, prompt, tokens: int) -> tuple[float, float, int]:
    """(time to first token, generation tokens/s after the first, tokens generated)."""
    tic = time.perf_counter()
    first = after_first = None
    n = 0
    for _ in generate_step(prompt, model, max_tokens=tokens, sampler=greedy):
        n += 1
        if first is None:
            after_first = time.perf_counter()
            first = after_first - tic
    rest = time.perf_counter() - after_first
    return first, (n - 1) / rest if n > 1 and rest > 0 else float("nan"), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="mistral-7b")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    parser.add_argument("--tokens", type=int, default=256, help="tokens to generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    machine = describe_machine()
    print("machine:", json.dumps(machine), flush=True)
    vocab = SHAPES[args.shape]["vocab_size"]
    mx.random.seed(7)
    prompt = mx.random.randint(0, vocab, (args.prompt,)).astype(mx.int32)
    mx.eval(prompt)
    sink = open(args.json, "a", encoding="utf-8") if args.json else None
    print(
        f"{'variant':<10} {'prompt':>6} {'gen':>5} {'TTFT ms':>8} {'gen tok/s':>9} {'peak GB':>8} {'model GB':>8}",
        flush=True,
    )
    for name in args.variants:
        route, lora = VARIANTS[name]
        model = build(args.shape, route, lora=lora)
        if lora:  # a trained adapter's B is not zero: give it random values of a plausible size
            mx.random.seed(11)
            for _, module in model.named_modules():
                if isinstance(module, LoRALinear):
                    module.lora_b = 0.01 * mx.random.normal(module.lora_b.shape)
        model.eval()
        mx.eval(model.parameters())
        model_gb = mx.get_active_memory() / 1e9
        generate_once(model, prompt, 8)  # warm-up: kernels compiled, caches made
        mx.reset_peak_memory()
        runs = [generate_once(model, prompt, args.tokens) for _ in range(args.repeats)]
        record = {
            "variant": name,
            "prompt": args.prompt,
            "tokens": args.tokens,
            "repeats": args.repeats,
            "ttft_s": statistics.median(r[0] for r in runs),
            "generation_tps": statistics.median(r[1] for r in runs),
            "generated": runs[-1][2],
            "peak_memory_gb": mx.get_peak_memory() / 1e9,
            "model_gb": model_gb,
            "runs": runs,
            "shape": args.shape,
            "mlx": machine["mlx"],
            "device": machine["device"],
        }
        if sink:
            sink.write(json.dumps(record) + "\n")
            sink.flush()
        print(
            f"{name:<10} {args.prompt:>6} {record['generated']:>5} {1000 * record['ttft_s']:8.1f} {record['generation_tps']:9.1f} "
            f"{record['peak_memory_gb']:8.2f} {model_gb:8.2f}",
            flush=True,
        )
        del model
        gc.collect()
        mx.clear_cache()


if __name__ == "__main__":
    main()
