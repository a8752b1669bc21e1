"""The pipeline's own training job, just in time, at the Mistral-7B shape (issue 17): does the CUDA
graph setting that the job makes for itself take effect?

A training job that trains just in time sets LOW_MEMORY_GRAPHS (farense.memory_presets) in its own
process, after choosing its route from the model folder and before MLX queues any GPU work
(farense.adapter_job), and then trains with no memory limit (farense.training.queue_margin). MLX
reads the graph settings once per process; had it read them before the job set them, the job would
train with MLX's large graphs and no limit (30.0 GB at 4 x 512 on an H200, BENCHMARKS.md 1.13)
instead of 16.7 GB. This runs the job as the pipeline's data-parallel ranks do
(`python -c "from farense.adapter_job import main; main()" JOB.json`), with:
  job      MLX_MAX_OPS_PER_BUFFER / MLX_MAX_MB_PER_BUFFER removed from its environment: the job sets them
  outside  the same values in its environment from the start (as the benchmarks of 1.13 ran)
  mlx      MLX's defaults for an H200 set from outside (100 / 1,000): the job leaves them, and train()
           falls back to the 1 GB memory limit
and prints each run's tokens/s, peak memory and the graph settings its run record names.

    python3 tests/benchmarks/bench_jit_job.py --work /tmp/jit-job                  # the H200
    python3 tests/benchmarks/bench_jit_job.py --shape tiny --batch 2 --length 128 \
        --records 16 --work /tmp/jit-job-tiny                                     # a CPU smoke test

The model folder (--work/model) is made once, in its own process: a byte-level BPE tokenizer
(farense.tokenizer_build) trained on resources/raw, the random-weight int4 model of
bench_gpu_training.build (4 bits, group size 64) saved as an MLX model folder; the data are
records of the raw corpus's text, each longer than --length tokens. Training: the pipeline's
defaults with batch x length, no accumulation, no checkpointing, compute jit, one epoch. Not part of
the test suite: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ("MLX_MAX_OPS_PER_BUFFER", "MLX_MAX_MB_PER_BUFFER")
VARIANTS = {"job": None, "outside": ("4", "50"), "mlx": ("100", "1000")}


def raw_texts() -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted((ROOT / "resources/raw").rglob("*.txt"))]


def make_model(shape: str, folder: Path) -> None:
    """The tokenizer and the random int4 model, saved as an MLX model folder (in this process)."""
    sys.path.insert(0, str(ROOT / "tests/benchmarks"))
    from bench_gpu_training import SHAPES, build
    from mlx.utils import tree_flatten
    from mlx_lm.utils import save_config

    import mlx.core as mx
    from farense.tokenizer_build import train_tokenizer

    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    train_tokenizer(raw_texts(), SHAPES[shape]["vocab_size"], tmp)
    model = build(shape, "int4", lora=False)
    mx.save_safetensors(str(tmp / "model.safetensors"), dict(tree_flatten(model.parameters())))
    config = {
        "model_type": "mistral",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "quantization": {"group_size": 64, "bits": 4, "mode": "affine"},
        **SHAPES[shape],
    }
    save_config(config, str(tmp / "config.json"))
    tmp.rename(folder)


def make_data(folder: Path, records: int, length: int) -> None:
    """train.jsonl (`records` lines) and valid.jsonl (4) in mlx-lm's text format, each record
    about 8 characters a token longer than `length` tokens, cut from the raw corpus in turn."""
    corpus = " ".join(" ".join(t.split()) for t in raw_texts())
    size = 8 * length
    folder.mkdir(parents=True, exist_ok=True)
    for name, count, start in (("train", records, 0), ("valid", 4, records)):
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(start, start + count):
                offset = (i * size) % max(len(corpus) - size, 1)
                text = corpus[offset : offset + size]
                key = hashlib.sha256(f"{name}{i}".encode()).hexdigest()[:16]
                meta = {"id": f"chunk-{key}", "kind": "chunk", "doc_id": f"bench-{i}", "origin": "resources/raw"}
                f.write(json.dumps({"text": text, "meta": meta}, ensure_ascii=False) + "\n")


def job_for(work: Path, variant: str, batch: int, length: int) -> Path:
    """The job file of one run: the pipeline's default training options at batch x length."""
    import yaml

    from farense.memory_presets import resolve_training

    training = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))["training"]
    training.update(
        memory="16gb",
        batch_size=batch,
        max_seq_length=length,
        grad_accumulation=1,
        grad_checkpoint=False,
        compute="jit",
        epochs=1,
        warmup_steps=0,
        steps_per_report=5,
        steps_per_eval=1000,
        val_batches=1,
    )
    out = work / variant
    job = {
        "model": str(work / "model"),
        "kind": "qlora",
        "train": str(work / "data/train.jsonl"),
        "valid": str(work / "data/valid.jsonl"),
        "schema": str(ROOT / "config/schemas/jsonl_text.schema.yaml"),
        "data_format": "text",
        "training": resolve_training(training, ROOT / "config/memory"),
        "adapter": str(out / "adapter"),
        "checkpoints": str(out / "checkpoints"),
        "run": str(out / "run.json"),
        "log": str(out / "train.log"),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "job.json"
    path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    return path


def run_job(job_path: Path, variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in GRAPHS}
    if VARIANTS[variant]:
        env.update(zip(GRAPHS, VARIANTS[variant]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "scripts"), env.get("PYTHONPATH")]))
    code = "from farense.adapter_job import main; main()"
    subprocess.run([sys.executable, "-c", code, str(job_path)], env=env, check=True)
    job = json.loads(job_path.read_text(encoding="utf-8"))
    record = json.loads(Path(job["run"]).read_text(encoding="utf-8"))
    summary = json.loads((Path(job["adapter"]) / "training_summary.json").read_text(encoding="utf-8"))
    # the reports after the first (its window holds the first step's compilation)
    rates = [float(r) for r in re.findall(r" (\d+) tok/s", Path(job["log"]).read_text(encoding="utf-8"))][1:]
    return {
        "variant": variant,
        "compute": summary["compute"],
        "graphs": {k: record["mlx_environment"].get(k) for k in GRAPHS},
        "steps": summary["iterations"],
        "tokens_per_second_job": record["tokens_per_second"],
        "tokens_per_second_reports": rates,
        "peak_gb": record["peak_memory_gb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a folder for the model, the data and the runs")
    parser.add_argument("--shape", choices=("mistral-7b", "tiny"), default="mistral-7b")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--records", type=int, default=160, help="training records: records / batch steps")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    parser.add_argument("--make-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    if args.make_model:
        make_model(args.shape, args.work / "model")
        return
    if not (args.work / "model").is_dir():
        # in a process of its own: this one's MLX must not touch the GPU before the jobs run
        subprocess.run(
            [sys.executable, __file__, "--make-model", "--shape", args.shape, "--work", str(args.work)], check=True
        )
    make_data(args.work / "data", args.records, args.length)
    print(
        f"{'variant':8} {'graphs':>10} {'steps':>5} {'tok/s reports (median)':>22} {'tok/s job':>9} {'peak GB':>7}  compute"
    )
    for variant in args.variants:
        result = run_job(job_for(args.work, variant, args.batch, args.length), variant)
        rates = sorted(result["tokens_per_second_reports"])
        median = rates[len(rates) // 2] if rates else float("nan")
        graphs = "/".join(str(v) for v in result["graphs"].values())
        print(
            f"{variant:8} {graphs:>10} {result['steps']:>5} {median:>22.0f} "
            f"{result['tokens_per_second_job'] or 0:>9.0f} {result['peak_gb']:>7.2f}  {result['compute']}",
            flush=True,
        )
        if args.json:
            with args.json.open("a", encoding="utf-8") as f:
                f.write(json.dumps({**result, "shape": args.shape, "batch": args.batch, "length": args.length}) + "\n")


if __name__ == "__main__":
    main()
