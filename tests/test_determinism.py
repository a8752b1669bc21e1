"""Same inputs, same outputs: the artifacts hold what the inputs decide, and a second build gives
the same bytes. Time, memory, speed and the machine are in each job's run record (results/runs/);
the lineage keeps its times. The whole chain built twice and compared file by file is
tests/benchmarks/bench_determinism.py; here the part that costs the suite nothing: the tiny
report tree read, and the data, models and adapters that the other model tests build anyway in
the built_data tree (another folder) compared with it."""

import csv
import json
import re

from conftest import ROOT, snakemake
from farense.provenance import describe

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))
# Folders and files under results/ that record a run rather than its result.
RUN_RECORDS = ("logs/", "benchmarks/", "runs/", "lineage/", "lineage.json")
# Key words that name a measurement of the run or the machine, or how the run went.
MEASURED = re.compile(
    r"(^|_)(seconds|per_second|peak|memory|wall|time|started|ended|elapsed|platform|blas|hostname|resumed)(_|$)"
)
# What a model's or adapter's folder and the data hold: the same bytes on every build of the same inputs.
DETERMINISTIC = (
    "results/clean/corpus.parquet",
    "results/clean/stats.json",
    "results/data/records.parquet",
    "results/data/records_stats.json",
    "results/data/train.jsonl",
    "results/data/valid.jsonl",
    "results/data/test.jsonl",
    "results/data/split_stats.json",
    "results/models/base",
    "results/models/base-int4",
    "results/models/conversion.json",
    "results/adapters/qlora",
    "results/adapters/lora",
)


def artifacts(wf):
    """Every file under results/ that is an artifact (not a run record), by relative path."""
    results = wf / "results"
    return {
        p.relative_to(results).as_posix(): p
        for p in sorted(results.rglob("*"))
        if p.is_file()
        and p.name != ".snakemake_timestamp"
        and not p.relative_to(results).as_posix().startswith(RUN_RECORDS)
    }


def keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from keys(v)


def test_artifacts_hold_no_timings_paths_or_machine(tiny_report):
    found = artifacts(tiny_report)
    assert (
        "models/base/farense_base.json" in found
        and "adapters/qlora/training_summary.json" in found
        and "eval/qlora.json" in found
    )
    for rel, path in found.items():
        if rel == "report.html":
            continue  # the page that shows the run's cost (from the run records) and when it was built
        if path.suffix == ".json":
            bad = {k for k in keys(json.loads(path.read_text())) if MEASURED.search(k)}
            assert not bad, f"{rel} holds {bad}"
        if path.suffix == ".csv":
            header = next(csv.reader(path.open()))
            assert not [k for k in header if MEASURED.search(k)], f"{rel}: {header}"
        # no absolute path of this build's folder (a second build elsewhere would differ)
        assert str(tiny_report).encode() not in path.read_bytes(), rel


def test_run_records_hold_the_cost_and_the_lineage_covers_them(tiny_report):
    runs = {p.stem: json.loads(p.read_text()) for p in (tiny_report / "results/runs").glob("*.json")}
    evaluations = {f"evaluate_{m}" for m in ("base", "base_full", "lora", "qlora")}
    assert set(runs) == {"build_base_model", "train_qlora", "train_lora"} | evaluations
    assert runs["build_base_model"]["pretrain_tokens_per_second"] > 0 and runs["build_base_model"]["blas"]
    for name in ("train_qlora", "train_lora"):
        assert runs[name]["tokens_per_second"] > 0 and runs[name]["peak_memory_gb"] > 0 and runs[name]["steps"]
    for name in evaluations:
        assert runs[name]["generation"]["tokens_per_second"] > 0 and runs[name]["peak_memory_gb"] > 0
    for job in runs:
        entry = json.loads((tiny_report / f"results/lineage/{job}.json").read_text())
        assert {"path": f"results/runs/{job}.json", "name": "run"}.items() <= next(
            o for o in entry["outputs"] if o["name"] == "run"
        ).items()
    report = json.loads((tiny_report / "results/lineage/report.json").read_text())
    assert {f"results/runs/{job}.json" for job in runs} <= {
        i["path"] for i in report["inputs"]
    }  # the report reads its cost there


def test_a_second_build_in_another_folder_gives_the_same_bytes(tiny_report, built_data):
    # The targets (and configuration) that test_model_stages and test_training build in built_data:
    # done here first, it costs them nothing.
    snakemake(built_data, "results/models/conversion.json", "results/adapters/qlora", "results/adapters/lora", *TINY)
    differ = []
    for artifact in DETERMINISTIC:
        first, second = tiny_report / artifact, built_data / artifact
        if describe(first)["sha256"] != describe(second)["sha256"]:
            files = [p.relative_to(first) for p in first.rglob("*") if p.is_file()] if first.is_dir() else [""]
            differ += [
                f"{artifact}/{f}".rstrip("/") for f in files if (first / f).read_bytes() != (second / f).read_bytes()
            ]
    assert not differ, f"differ between two builds: {differ}"
