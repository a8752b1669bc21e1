"""Benchmark of the data stages: MB/s and peak memory of clean_text, build_records and split_jsonl.

    python tests/benchmarks/bench_data_stages.py --sizes 10 100 1000 --workers 1 2

Generates a messy corpus of each size (MB of raw files) in a temporary folder, then runs each
stage in its own process, as Snakemake would, with each number of workers (the rule's
threads), and prints wall time, throughput (MB of raw corpus per second) and peak memory per
stage: the largest resident set of any one process, and the largest total proportional set
size (PSS: shared pages split between the processes that share them) of the stage's process
and its worker processes together, sampled every 0.1 s. Not part of the test suite: figures,
not pass/fail.

The generated text mixes real sentences of the shipped corpus (5 % of sentences) with sentences
drawn from a synthetic Portuguese-like vocabulary (Zipf-distributed), so that paragraphs are as
varied as in a real corpus; 3 % of paragraphs are repeated on purpose for the deduplication, and
the mess of the shipped corpus is injected (CRLF, cp1252 files, mojibake, OCR hyphenation,
page numbers, running headers, HTML boilerplate, markdown, JSONL).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

SYLLABLES = "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga go gu la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo ção ções ão ões ém ás ês ol ar er or al el".split()
FILE_BYTES = 512 * 1024


def vocabulary(rng: random.Random, size: int = 30000) -> tuple[list[str], list[float]]:
    words = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(size * 2)})[:size]
    rng.shuffle(words)
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(words))]
    return words, weights


def real_sentences() -> list[str]:
    from farense.records import split_sentences

    sentences = []
    for path in (ROOT / "resources/raw").rglob("*.txt"):
        text = path.read_bytes().decode("utf-8", errors="ignore")
        sentences += [s for p in text.split("\n\n") for s in split_sentences(" ".join(p.split())) if len(s) > 40]
    return sentences


class Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.words, weights = vocabulary(self.rng)
        self.real = real_sentences()
        self.recent: list[str] = []
        # Word indices drawn in bulk by numpy: drawing word by word in Python is the slow part.
        self._np = np.random.default_rng(seed)
        self._p = np.asarray(weights) / np.sum(weights)
        self._pool: list[str] = []
        self._next = 0

    def _draw(self, k: int) -> list[str]:
        if self._next + k > len(self._pool):
            self._pool = [self.words[i] for i in self._np.choice(len(self.words), size=1_000_000, p=self._p)]
            self._next = 0
        self._next += k
        return self._pool[self._next - k : self._next]

    def sentence(self) -> str:
        if self.rng.random() < 0.05:
            return self.rng.choice(self.real)
        words = self._draw(self.rng.randint(8, 25))
        return words[0].capitalize() + " " + " ".join(words[1:]) + self.rng.choice(".....?!")

    def paragraph(self) -> str:
        if self.recent and self.rng.random() < 0.03:  # a repeated paragraph for deduplication
            return self.rng.choice(self.recent)
        text = " ".join(self.sentence() for _ in range(self.rng.randint(3, 8)))
        if self.rng.random() < 0.02:
            mangled = text.encode("utf-8").decode("cp1252" if self.rng.random() < 0.5 else "mac_roman", errors="ignore")
            text = mangled
        self.recent = (self.recent + [text])[-50:]
        return text

    def document(self, fmt: str, target: int) -> tuple[str, str]:
        paragraphs, size = [], 0
        while size < target:
            paragraphs.append(self.paragraph())
            size += len(paragraphs[-1]) + 2
        if fmt == "txt":  # a scanned book: wrapped, hyphenated, paginated
            lines = []
            for i, p in enumerate(paragraphs):
                lines += textwrap.wrap(p, 66, break_on_hyphens=False) + [""]
                if i % 6 == 5:
                    lines += [str(i // 6 + 1), "\f" + "HISTÓRIA DO SPORTING CLUBE FARENSE", ""]
            return "\r\n".join(lines), "cp1252" if self.rng.random() < 0.3 else "utf-8"
        if fmt == "md":
            body = "\n\n".join(
                f"## Secção {i}\n\n**{p[:30]}** {p[30:]} ⚽" if i % 5 == 0 else p for i, p in enumerate(paragraphs)
            )
            return body, "utf-8"
        if fmt == "html":
            body = "".join(f"<p>{p.replace('&', '&amp;')}</p>\n" for p in paragraphs)
            return (
                f"<html><head><script>var x=1;</script></head><body><nav>Início | Loja</nav><article>{body}</article><footer>© Farense</footer></body></html>",
                "utf-8",
            )
        return "\n".join(json.dumps({"texto": p, "fonte": "gerado"}, ensure_ascii=False) for p in paragraphs), "utf-8"


def make_corpus(folder: Path, megabytes: int, seed: int = 0) -> int:
    gen = Generator(seed)
    folder.mkdir(parents=True)
    total, n = 0, 0
    formats = ("txt", "md", "html", "jsonl")
    while total < megabytes * 1_000_000:
        fmt = formats[n % len(formats)]
        text, encoding = gen.document(fmt, FILE_BYTES)
        data = text.encode(encoding, errors="replace")
        (folder / f"doc{n:05d}.{fmt}").write_bytes(data)
        total += len(data)
        n += 1
    # the shipped structured files too, for the question records
    for name in ("dados/perguntas_respostas.json", "dados/resultados_farense.csv"):
        data = (ROOT / "resources/raw" / name).read_bytes()
        (folder / Path(name).name).write_bytes(data)
        total += len(data)
    return total


STAGES = {
    "clean_text": (
        "from farense.cleaning import CleaningOptions\nfrom farense.corpus import DedupOptions, clean_corpus\n"
        "clean_corpus({raw!r}, {out!r} + '/corpus.parquet', {out!r} + '/clean_stats.json', CleaningOptions(), DedupOptions(), workers={workers})"
    ),
    "build_records": (
        "from farense.records import RecordOptions, build_records\n"
        "build_records({out!r} + '/corpus.parquet', {out!r} + '/records.parquet', {out!r} + '/records_stats.json', RecordOptions(), workers={workers})"
    ),
    "split_jsonl": (
        "from farense.split_options import SplitOptions\nfrom farense.splitting import split_jsonl\n"
        "split_jsonl({out!r} + '/records.parquet', {out!r}, {out!r} + '/split_stats.json', {schema!r}, SplitOptions(), workers={workers})"
    ),
}


def _tree_pss_mb(pid: int) -> float:
    """PSS of a process and all its descendants, in MB (0 once it is gone)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def run_stage(code: str) -> tuple[float, float, float]:
    """Wall seconds, peak RSS of the largest process (MB) and peak PSS of the process tree (MB)
    of one stage in a fresh Python process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "scripts"))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import logging; logging.disable(logging.WARNING)\n" + code], env=env
    )
    peak_pss = 0.0
    done = threading.Event()

    def sample():
        nonlocal peak_pss
        while not done.wait(0.1):
            peak_pss = max(peak_pss, _tree_pss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if status != 0:
        raise SystemExit(f"stage failed with status {status}")
    return seconds, usage.ru_maxrss / 1024, peak_pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="corpus sizes in MB")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker processes per stage (the rule's threads)"
    )
    args = parser.parse_args()
    schema = str(ROOT / "config/schemas/jsonl_chat.schema.yaml")
    print(f"{'size':>6} {'workers':>7} {'stage':<14} {'seconds':>8} {'MB/s':>7} {'RSS MB':>7} {'PSS MB':>7}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw"
            raw_bytes = make_corpus(raw, size)
            mb = raw_bytes / 1e6
            for workers in args.workers:
                out = Path(tmp) / f"out{workers}"
                out.mkdir()
                total, rss_peak, pss_peak = 0.0, 0.0, 0.0
                for stage, template in STAGES.items():
                    seconds, rss, pss = run_stage(
                        template.format(raw=str(raw), out=str(out), schema=schema, workers=workers)
                    )
                    total += seconds
                    rss_peak, pss_peak = max(rss_peak, rss), max(pss_peak, pss)
                    print(
                        f"{mb:6.0f} {workers:7d} {stage:<14} {seconds:8.2f} {mb / seconds:7.2f} {rss:7.0f} {pss:7.0f}",
                        flush=True,
                    )
                stats = json.loads((out / "split_stats.json").read_text())
                print(
                    f"{mb:6.0f} {workers:7d} {'all three':<14} {total:8.2f} {mb / total:7.2f} {rss_peak:7.0f} {pss_peak:7.0f}"
                    f"   ({stats['records']} records, leakage check passed: {stats['leakage_check']['passed']})",
                    flush=True,
                )
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
