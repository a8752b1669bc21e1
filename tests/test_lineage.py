"""Lineage of a real pipeline run: every job's entry, `lineage.py verify` and `show`, tampering."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, copy_built, snakemake

CLI = str(ROOT / "scripts" / "cli" / "lineage.py")
JOBS = {
    "clean_text",
    "build_records",
    "split_jsonl",
    "build_base_model",
    "convert_int4",
    "train_qlora",
    "train_lora",
    "evaluate_base",
    "evaluate_base_full",
    "evaluate_lora",
    "evaluate_qlora",
    "compare_models",
    "model_card_lora",
    "model_card_qlora",
    "lineage",
    "report",
}


def lineage(wf, *args):
    proc = subprocess.run([sys.executable, CLI, *args], cwd=wf, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def tampered(tiny_report, tmp_path):
    return copy_built(tiny_report, tmp_path / "wf")


def test_every_job_records_what_made_its_outputs(tiny_report):
    entries = {p.stem: json.loads(p.read_text()) for p in (tiny_report / "results/lineage").glob("*.json")}
    assert set(entries) == JOBS
    train = entries["train_qlora"]
    assert (
        train["rule"] == "train_qlora"
        and train["outputs"][0]["path"] == "results/adapters/qlora"
        and train["outputs"][0]["kind"] == "dir"
    )
    roles = {i["path"]: i["role"] for i in train["inputs"]}
    assert roles["results/data/train.jsonl"] == "data" and roles["results/models/base-int4"] == "data"
    assert roles["scripts/train_adapter.py"] == "code" and roles["scripts/farense/training.py"] == "code"
    assert train["params"]["training"]["learning_rate"] == 0.001  # tests/config/tiny.yaml
    for package in ("python", "mlx", "mlx-lm", "snakemake", "pandas", "pyarrow", "jsonschema"):
        assert train["versions"][package], package
    assert train["started"] <= train["ended"] and train["platform"]["machine"]
    clean = entries["clean_text"]
    assert any(i["path"].startswith("resources/raw/") for i in clean["inputs"])
    graph = json.loads((tiny_report / "results/lineage.json").read_text())
    assert graph["artifacts"]["results/data/train.jsonl"]["made_by"] == "split_jsonl"
    assert graph["artifacts"]["resources/raw/estadios.txt"]["role"] == "source"
    assert {
        "from": "results/data/train.jsonl",
        "to": "results/adapters/qlora",
        "job": "train_qlora",
        "role": "data",
    } in graph["edges"]


def test_verify_passes_on_a_fresh_run(tiny_report):
    code, out, err = lineage(tiny_report, "verify")
    assert code == 0, out + err
    assert out.startswith("ok: ") and "every hash and every link of the chain holds" in out
    code, out, _ = lineage(tiny_report, "verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["problems"] == []


def test_one_flipped_byte_names_the_file_and_everything_made_from_it(tampered):
    train = tampered / "results/data/train.jsonl"
    data = bytearray(train.read_bytes())
    data[10] ^= 1
    train.write_bytes(bytes(data))
    code, out, err = lineage(tampered, "verify")
    assert code == 1
    named = {line.split(": ", 1)[0] for line in out.splitlines()}
    downstream = {
        "results/data/train.jsonl",
        "results/models/base",
        "results/models/base-int4",
        "results/models/conversion.json",
        "results/adapters/qlora",
        "results/adapters/lora",
        "results/eval/base.json",
        "results/eval/lora.json",
        "results/eval/qlora.json",
        "results/eval/base_full.json",
        "results/eval/comparison.json",
        "results/cards/qlora.md",
        "results/cards/lora.md",
        "results/report.html",
    }
    assert downstream <= named, named
    # lineage.json is a record of hashes, not made from the data: it stays true
    assert (
        "results/data/valid.jsonl" not in named
        and "results/lineage.json" not in named
        and "results/clean/corpus.parquet" not in named
    )
    assert "results/data/train.jsonl: changed since split_jsonl made it" in out
    code, out, _ = lineage(tampered, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and {p["path"] for p in report["problems"]} == named


def test_a_removed_artifact_is_named(tampered):
    (tampered / "results/eval/base.json").unlink()
    code, out, _ = lineage(tampered, "verify")
    assert code == 1 and "results/eval/base.json: removed" in out


def test_an_edited_raw_file_is_reported_through_the_chain(tampered):
    raw = tampered / "resources/raw/estadios.txt"
    raw.write_text(raw.read_text() + "\nmais uma linha\n")
    code, out, _ = lineage(tampered, "verify")
    assert (
        code == 1
        and "results/clean/corpus.parquet: made from resources/raw/estadios.txt, which has changed since" in out
    )
    assert "results/adapters/qlora" in out
    # and Snakemake agrees that cleaning onwards must run again
    assert (
        "clean_text"
        in snakemake(
            tampered,
            "-n",
            "results/report.html",
            "--configfile",
            "config/config.yaml",
            str(ROOT / "tests/config/tiny.yaml"),
        ).stdout
    )


def test_show_prints_the_ancestry_down_to_the_raw_files(tiny_report):
    code, out, _ = lineage(tiny_report, "show", "results/adapters/qlora")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("results/adapters/qlora  [sha256 ") and "made by train_qlora" in lines[0]
    for ancestor in (
        "results/models/base-int4",
        "results/models/base",
        "results/data/train.jsonl",
        "results/data/records.parquet",
        "results/clean/corpus.parquet",
    ):
        assert any(ancestor + "  [" in line for line in lines), ancestor
    assert any("resources/raw/estadios.txt" in line and "source" in line for line in lines)
    assert any(line.lstrip("│├└─ ").startswith("code: ") for line in lines)
    # a file inside an output directory is shown as the directory's ancestry; --json gives the entry
    code, out, _ = lineage(tiny_report, "show", "results/adapters/qlora/adapters.safetensors", "--json")
    assert code == 0 and json.loads(out)["job"] == "train_qlora"


def test_errors_are_clear(tiny_report, tmp_path):
    code, _, err = lineage(tiny_report, "show", "results/nada.json")
    assert code == 2 and "not an artifact the lineage records" in err
    code, _, err = lineage(tmp_path, "verify")
    assert code == 2 and "no provenance entries" in err


def test_snakemakes_own_views_still_work(tiny_report):
    out = snakemake(
        tiny_report, "--summary", "--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml")
    ).stdout
    assert "results/lineage.json" in out and "results/report.html" in out
