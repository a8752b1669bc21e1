"""Same inputs, same outputs: two clean builds, every artifact's sha256 compared.

    python tests/benchmarks/bench_determinism.py [--cores 2] [--config default|tiny] [--keep DIR]
    python tests/benchmarks/bench_determinism.py --compare BUILD_A BUILD_B

Copies the workflow into two folders (two paths, so that an absolute path written into an
artifact shows as a difference), builds `results/report.html` from nothing in each, one after
the other, with the given configuration (`tiny`: tests/config/tiny.yaml, as the tests build;
`default`: config/config.yaml alone), then compares the sha256 of every file under results/,
leaving out what records a run rather than its result: logs/, benchmarks/, runs/ (the run
records: time, memory, speed, machine), lineage/ and lineage.json (the audit log, with times).
`--compare` compares two folders already built (each holding results/).

For each file that differs it says how: the JSON keys whose values differ (with both values),
the largest difference between the tensors of two safetensors files, or the lines of a text
file. Prints the counts and ends with status 1 when a file differs. Figures, not pass/fail for
CI: the cheap part of this check runs in the tests (tests/test_determinism.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import copy_workflow  # noqa: E402  (the tests' copy of the workflow)

# Folders and files under results/ that record how a run went, not what it made.
RUN_RECORDS = ("logs/", "benchmarks/", "runs/", "lineage/", "lineage.json")
# Snakemake's marker in folder outputs (empty; only its time matters), as farense.provenance ignores it.
IGNORED_NAMES = frozenset({".snakemake_timestamp"})
CONFIGS = {"tiny": ["--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml")], "default": []}


def artifact_files(results: Path) -> dict[str, str]:
    """{path relative to results/: sha256} of every file that is an artifact (not a run record)."""
    out = {}
    for path in sorted(p for p in results.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES):
        rel = path.relative_to(results).as_posix()
        if not rel.startswith(RUN_RECORDS):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _json_differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _json_differences(
                a.get(key, "<absent>"), b.get(key, "<absent>"), f"{where}.{key}" if where else str(key)
            )
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_differences(x, y, f"{where}[{i}]")]
    if a != b:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return [f"{where}: {a!r} vs {b!r} (difference {abs(a - b):.3g})"]
        return [f"{where}: {str(a)[:80]!r} vs {str(b)[:80]!r}"]
    return []


def how_they_differ(a: Path, b: Path, limit: int = 8) -> list[str]:
    """A few lines saying how two versions of one artifact differ."""
    if a.suffix == ".json":
        found = _json_differences(json.loads(a.read_text(encoding="utf-8")), json.loads(b.read_text(encoding="utf-8")))
        return found[:limit] + ([f"... {len(found) - limit} more"] if len(found) > limit else [])
    if a.suffix == ".safetensors":
        import mlx.core as mx
        import numpy as np

        ta, tb = mx.load(str(a)), mx.load(str(b))
        if ta.keys() != tb.keys():
            return ["different tensors"]
        worst = max(
            (float(np.abs(np.array(ta[k], dtype=np.float64) - np.array(tb[k], dtype=np.float64)).max()), k) for k in ta
        )
        changed = sum(1 for k in ta if not np.array_equal(np.array(ta[k]), np.array(tb[k])))
        return [f"{changed} of {len(ta)} tensors differ; largest difference {worst[0]:.3g} (in {worst[1]})"]
    if a.suffix == ".html":  # one long line: compare the text between tags
        import difflib
        import re

        ta, tb = (re.findall(r"[^<>]+", p.read_text(encoding="utf-8")) for p in (a, b))
        changes = [
            (ta[i1:i2], tb[j1:j2])
            for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
            if op != "equal"
        ]
        lines = [f"{' | '.join(x)[:70]!r} vs {' | '.join(y)[:70]!r}" for x, y in changes]
        return (
            [f"{len(changes)} passages of text differ"]
            + lines[:limit]
            + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])
        )
    if a.suffix in (".csv", ".jsonl", ".md", ".txt"):
        la, lb = a.read_text(encoding="utf-8").splitlines(), b.read_text(encoding="utf-8").splitlines()
        lines = [f"line {i + 1}: {x[:100]!r} vs {y[:100]!r}" for i, (x, y) in enumerate(zip(la, lb)) if x != y]
        if len(la) != len(lb):
            lines.append(f"{len(la)} lines vs {len(lb)}")
        return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])
    return [f"{a.stat().st_size} bytes vs {b.stat().st_size}"]


def compare(build_a: Path, build_b: Path) -> int:
    """Print the comparison of two builds; returns the number of artifacts that differ."""
    ra, rb = build_a / "results", build_b / "results"
    fa, fb = artifact_files(ra), artifact_files(rb)
    only = sorted(set(fa) ^ set(fb))
    same = sorted(p for p in set(fa) & set(fb) if fa[p] == fb[p])
    differ = sorted(p for p in set(fa) & set(fb) if fa[p] != fb[p])
    print(f"compared {len(set(fa) | set(fb))} artifact files under results/ (left out: {', '.join(RUN_RECORDS)})")
    print(f"identical: {len(same)}")
    for path in same:
        print(f"  = {path}")
    print(f"different: {len(differ)}")
    for path in differ:
        print(f"  ! {path}")
        for line in how_they_differ(ra / path, rb / path):
            print(f"      {line}")
    if only:
        print(f"in one build only: {len(only)}")
        for path in only:
            print(f"  ? {path}")
    return len(differ) + len(only)


def build(folder: Path, config: list[str], cores: int) -> float:
    copy_workflow(folder)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "results/report.html", *config],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the build in {folder} failed:\n{proc.stdout[-4000:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--keep", type=Path, help="build in DIR/a and DIR/b and keep them (else a temporary folder)")
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("BUILD_A", "BUILD_B"), help="only compare two built folders"
    )
    args = parser.parse_args()
    if args.compare:
        return 1 if compare(*args.compare) else 0
    with tempfile.TemporaryDirectory(prefix="farense-determinism-") as tmp:
        where = args.keep or Path(tmp)
        folders = [where / "a", where / "b"]
        for folder in folders:
            if folder.exists():
                raise SystemExit(f"{folder} exists: give an empty --keep folder")
            print(
                f"building {folder} ({args.config} configuration, {args.cores} cores): {build(folder, CONFIGS[args.config], args.cores):.0f} s",
                flush=True,
            )
        return 1 if compare(*folders) else 0


if __name__ == "__main__":
    sys.exit(main())
