"""Hashing and the chain check of farense.provenance on small hand-made stores."""

import hashlib
import os
import shutil
import time

from farense.provenance import ancestry, describe, graph, make_entry, now, slurm_job, verify


def test_file_hash_is_sha256(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"Farense 1910")
    assert describe(f) == {"kind": "file", "sha256": hashlib.sha256(b"Farense 1910").hexdigest(), "bytes": 12}


def test_directory_hash_covers_names_and_contents_not_times(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "sub" / "w.bin").write_bytes(b"\x00\x01")
    first = describe(d)
    assert first["kind"] == "dir" and first["files"] == 2 and first["bytes"] == 4
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    os.utime(copy / "config.json", (time.time() + 100, time.time() + 100))
    assert describe(copy)["sha256"] == first["sha256"]
    (copy / "sub" / "w.bin").rename(copy / "sub" / "v.bin")  # same bytes, another name
    assert describe(copy)["sha256"] != first["sha256"]
    (d / "sub" / "w.bin").write_bytes(b"\x00\x02")  # same name, other bytes
    assert describe(d)["sha256"] != first["sha256"]


def chain(tmp_path, monkeypatch):
    """raw.txt -> clean.txt (job a) -> model.bin (job b) -> report.txt (job c); code/x.py is code."""
    monkeypatch.chdir(tmp_path)
    for name, text in (
        ("raw.txt", "bruto"),
        ("clean.txt", "limpo"),
        ("model.bin", "pesos"),
        ("report.txt", "relatório"),
    ):
        (tmp_path / name).write_text(text)
    (tmp_path / "scripts").mkdir(exist_ok=True)
    (tmp_path / "scripts" / "x.py").write_text("print(1)")
    t = now()
    return [
        make_entry("a", "a", {}, {"raw": ["raw.txt"], "code": ["scripts/x.py"]}, {"out": "clean.txt"}, {"k": 1}, t, t),
        make_entry("b", "b", {}, {"data": ["clean.txt"]}, {"out": "model.bin"}, {"lr": 0.1}, t, t),
        make_entry("c", "c", {}, {"model": ["model.bin"], "data": ["clean.txt"]}, {"out": "report.txt"}, {}, t, t),
    ]


def test_an_intact_chain_verifies(tmp_path, monkeypatch):
    entries = chain(tmp_path, monkeypatch)
    assert verify(entries) == []
    assert entries[0]["inputs"][1]["role"] == "code" and entries[0]["versions"]["python"]


def test_a_changed_artifact_and_everything_made_from_it_are_named(tmp_path, monkeypatch):
    entries = chain(tmp_path, monkeypatch)
    (tmp_path / "clean.txt").write_text("limpo!")
    problems = {p["path"]: p["problem"] for p in verify(entries)}
    assert set(problems) == {"clean.txt", "model.bin", "report.txt"}
    assert problems["clean.txt"].startswith("changed since a made it")
    assert "clean.txt" in problems["model.bin"]


def test_a_changed_source_or_code_file_names_what_was_made_from_it(tmp_path, monkeypatch):
    entries = chain(tmp_path, monkeypatch)
    (tmp_path / "scripts" / "x.py").write_text("print(2)")
    problems = {p["path"]: p["problem"] for p in verify(entries)}
    assert set(problems) == {"clean.txt", "model.bin", "report.txt"}
    assert "scripts/x.py" in problems["clean.txt"] and "changed since" in problems["clean.txt"]


def test_a_removed_artifact_and_a_stale_link_are_named(tmp_path, monkeypatch):
    entries = chain(tmp_path, monkeypatch)
    (tmp_path / "report.txt").unlink()
    assert verify(entries) == [{"path": "report.txt", "problem": "removed"}]
    entries = chain(tmp_path, monkeypatch)
    # job b was rerun on another clean.txt after c had read the old one: c's link is stale
    entries[0]["outputs"][0]["sha256"] = "0" * 64
    entries[1]["inputs"][0]["sha256"] = "0" * 64
    problems = {p["path"]: p["problem"] for p in verify(entries)}
    assert "another version of clean.txt" in problems["report.txt"]


def test_ancestry_goes_down_to_the_sources_once(tmp_path, monkeypatch):
    entries = chain(tmp_path, monkeypatch)
    lines = ancestry(entries, "report.txt")
    assert lines[0].startswith("report.txt") and "made by c" in lines[0]
    text = "\n".join(lines)
    assert "raw.txt" in text and "source" in text and "code: 1 files (x.py)" in text
    assert text.count("clean.txt  [") == 2 and "(ancestry above)" in text  # reached twice, expanded once
    assert "scripts/x.py" in "\n".join(ancestry(entries, "report.txt", show_code=True))


def test_a_slurm_job_is_named_in_its_entry(tmp_path, monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_JOB_PARTITION"):
        monkeypatch.delenv(name, raising=False)
    entries = chain(tmp_path, monkeypatch)
    assert "slurm" not in entries[0]  # run locally: the entry is what it always was
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    t = now()
    entry = make_entry("a", "a", {}, {"raw": ["raw.txt"]}, {"out": "clean.txt"}, {}, t, t)
    assert entry["slurm"] == {"job_id": "4242", "node": "gpu07", "partition": "gpu"}
    assert graph([entry])["jobs"]["a"]["slurm"]["job_id"] == "4242"
    assert slurm_job({"SLURM_JOB_ID": "7"}) == {"job_id": "7"} and slurm_job({}) is None
