"""Damaged artifacts (issue 16, item 5): a cut or garbled safetensors file (model, adapter,
checkpoint), a corrupt GGUF, a split line edited by hand, a model folder without config.json.
Each stops what reads it with one line naming the file; a damaged checkpoint is set aside and
training resumes from the one before. The files are the tiny build's own (tiny_report), damaged
in copies."""

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, copy_built, snakemake
from farense.artifact_checks import check_adapter_dir, check_model_dir, check_safetensors
from farense.errors import PipelineError
from farense.split_lines import read_split

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))
SCRIPT = str(ROOT / "scripts/cli/inference_qlora.py")
CHAT_SCHEMA = ROOT / "config/schemas/jsonl_chat.schema.yaml"
SAFETENSORS = (
    "results/models/base/model.safetensors",
    "results/models/base-int4/model.safetensors",
    "results/adapters/qlora/adapters.safetensors",
    "results/checkpoints/qlora/last/optimizer.safetensors",
)


def cut(path: Path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:size])


def one_line(message: str, path) -> str:
    """`message`, checked to be one line that starts with the file's path."""
    assert "\n" not in message and message.startswith(f"{path}: ") or message.startswith(f"{path}, line "), message
    return message


def error_of(function, *args) -> str:
    with pytest.raises(PipelineError) as info:
        function(*args)
    return str(info.value)


def job_error(workdir: Path, job: str, stdout: str) -> str:
    """The one ERROR line a failed job logged (and no traceback)."""
    log = (workdir / f"results/logs/{job}.log").read_text(encoding="utf-8")
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in log, log[-3000:]
    message = errors[0].split(": ", 1)[1]
    assert message in stdout  # Snakemake shows it too
    return message


def test_cut_or_garbled_safetensors_files_are_named(tiny_report, tmp_path):
    for name in SAFETENSORS:
        data = (tiny_report / name).read_bytes()
        assert check_safetensors(tiny_report / name)  # whole: its tensors' names and shapes
        header = 8 + int.from_bytes(data[:8], "little")
        for size in (0, 7, 8, header // 2, header + (len(data) - header) // 2, len(data) - 1):
            damaged = tmp_path / Path(name).name
            damaged.write_bytes(data[:size])
            assert "truncated" in one_line(error_of(check_safetensors, damaged), damaged), (name, size)
        damaged.write_bytes(data[:8] + b"\x00" * 8 + data[16:])  # garbled header
        assert "its header is not JSON" in one_line(error_of(check_safetensors, damaged), damaged)
        damaged.write_bytes(b"\xff" * 8 + data[8:])  # garbled length field
        assert "header of" in one_line(error_of(check_safetensors, damaged), damaged)


def test_model_and_adapter_folders_are_checked_whole(tiny_report, tmp_path):
    model = shutil.copytree(tiny_report / "results/models/base-int4", tmp_path / "int4")
    adapter = shutil.copytree(tiny_report / "results/adapters/qlora", tmp_path / "qlora")
    check_model_dir(model)
    check_adapter_dir(adapter)
    (model / "config.json").unlink()
    assert one_line(error_of(check_model_dir, model), model).endswith("model folder without config.json")
    (adapter / "adapter_config.json").write_text('{"model": "results/models/base-int4", "num_lay')
    message = one_line(error_of(check_adapter_dir, adapter), adapter / "adapter_config.json")
    assert "damaged adapter configuration: not JSON" in message


def inference(cwd: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--json", "--max-tokens", "4", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_the_inference_script_names_the_damaged_file(tiny_report, tmp_path):
    for part in ("results/models/base-int4", "results/adapters/qlora"):
        shutil.copytree(tiny_report / part, tmp_path / part)
    damages = {
        "results/adapters/qlora/adapters.safetensors": lambda p: cut(p, p.stat().st_size - 100),
        "results/models/base-int4/model.safetensors": lambda p: cut(p, 4),
        "results/models/base-int4/config.json": Path.unlink,
        "results/adapters/qlora/adapter_config.json": lambda p: p.write_text("{"),
    }
    for name, damage in damages.items():
        path = tmp_path / name
        kept = path.read_bytes()
        damage(path)
        code, out = inference(tmp_path, "Onde joga o Farense?")
        assert code == 1 and out["status"] == "error", out
        named = name if path.exists() else str(Path(name).parent)  # a missing config.json: its folder
        assert out["error"].startswith(named + ":") and "\n" not in out["error"], out["error"]
        path.write_bytes(kept)
    assert inference(tmp_path, "Onde joga o Farense?")[0] == 0  # mended: answers again


def test_training_stops_on_a_damaged_model_with_one_line(tiny_report, tmp_path):
    wf = copy_built(tiny_report, tmp_path / "wf")
    cut(wf / "results/models/base-int4/model.safetensors", 50_000)
    proc = snakemake(wf, "results/adapters/qlora", "--forcerun", "train_qlora", *TINY, check=False)
    assert proc.returncode != 0
    message = job_error(wf, "train_qlora", proc.stdout)
    assert message.startswith("results/models/base-int4/model.safetensors: damaged safetensors file: truncated")


def test_split_lines_edited_by_hand_are_named_with_their_line(tiny_report, tmp_path):
    lines = (tiny_report / "results/data/train.jsonl").read_bytes().splitlines(keepends=True)
    obj = json.loads(lines[6])
    edits = {
        b'{"messages": [{"role": "user", "content": "Onde?"}': "line 7: not JSON (Expecting ',' delimiter at column 51)",
        json.dumps(
            {**obj, "messages": obj["messages"][:1]}
        ).encode(): "line 7: field 'messages': ",  # the answer deleted
        json.dumps({"mensagens": obj["messages"], "meta": obj["meta"]}).encode(): "line 7: field '(top level)': ",
        json.dumps(
            {**obj, "messages": [obj["messages"][0], {"role": "assistant", "content": " "}]}
        ).encode(): "line 7: field 'messages/1/content'",
        lines[6].rstrip(b"\n").replace(b'"', b'\xff"', 1): "line 7: not UTF-8 (byte 0xff at column 2)",
        b"": "line 7: empty line",
    }
    for edit, expected in edits.items():
        damaged = tmp_path / "train.jsonl"
        damaged.write_bytes(b"".join(lines[:6]) + edit + b"\n" + b"".join(lines[7:]))
        message = one_line(error_of(read_split, damaged, CHAT_SCHEMA), damaged)
        assert message.startswith(f"{damaged}, {expected}"), message


def test_the_evaluation_stops_on_a_test_line_edited_by_hand(tiny_report, tmp_path):
    wf = copy_built(tiny_report, tmp_path / "wf")
    test = wf / "results/data/test.jsonl"
    lines = test.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace('"role": "assistant"', '"role": "assistant" "', 1)  # a stray quote typed in
    test.write_text("".join(lines), encoding="utf-8")
    proc = snakemake(wf, "results/eval/base.json", *TINY, check=False)  # the edit is newer: evaluate_base reruns
    assert proc.returncode != 0
    assert job_error(wf, "evaluate_base", proc.stdout).startswith("results/data/test.jsonl, line 3: not JSON (")


def test_a_damaged_checkpoint_is_set_aside_and_the_one_before_resumed(tiny_report, tmp_path):
    wf = copy_built(tiny_report, tmp_path / "wf")
    checkpoints = wf / "results/checkpoints/qlora"
    before = json.loads((checkpoints / "previous/state.json").read_text())["iteration"]
    assert json.loads((checkpoints / "last/state.json").read_text())["iteration"] > before
    cut(checkpoints / "last/optimizer.safetensors", 30_000)  # a kill while it was written, a full disk...
    snakemake(wf, "results/adapters/qlora", "--forcerun", "train_qlora", *TINY)
    log = (wf / "results/logs/train_qlora.log").read_text(encoding="utf-8")
    assert (
        "checkpoint results/checkpoints/qlora/last is damaged (results/checkpoints/qlora/last/optimizer.safetensors: "
        "damaged safetensors file: truncated"
    ) in log and "set aside as last.damaged" in log
    assert f"resuming from the checkpoint before it, results/checkpoints/qlora/previous (iteration {before})" in log
    run = json.loads((wf / "results/runs/train_qlora.json").read_text())
    assert run["resumed_from"] == before and run["checkpoints_set_aside"] == ["results/checkpoints/qlora/last.damaged"]
    assert (checkpoints / "last.damaged/optimizer.safetensors").stat().st_size == 30_000  # kept as it was, for a look
    # the same adapter as the uninterrupted build's (training is exact from any checkpoint)
    assert (wf / "results/adapters/qlora/adapters.safetensors").read_bytes() == (
        tiny_report / "results/adapters/qlora/adapters.safetensors"
    ).read_bytes()


def test_with_no_whole_checkpoint_training_starts_from_scratch(tmp_path, caplog):
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    from farense import checkpoints

    def fresh():
        mx.random.seed(0)
        model, optimizer = nn.Linear(8, 4), optim.Adam(learning_rate=1e-3)
        optimizer.init(model.trainable_parameters())
        return model, optimizer

    model, optimizer = fresh()
    mx.save_safetensors(str(tmp_path / "best.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    for iteration in (10, 20):
        checkpoints.save(tmp_path, model, optimizer, {"run": "r1", "iteration": iteration})
    make = lambda counters: dict(counters)  # noqa: E731
    # a checkpoint of another run is passed over, not set aside
    assert checkpoints.resume(tmp_path, *fresh(), "r2", make).counters is None and (tmp_path / "last").exists()
    # a damaged `previous` is never looked at while `last` is whole
    cut(tmp_path / "previous/adapters.safetensors", 10)
    assert checkpoints.resume(tmp_path, *fresh(), "r1", make).counters == {"iteration": 20}
    (tmp_path / "last/state.json").write_text('{"run": "r1", "itera')
    with caplog.at_level("WARNING"):
        resumed = checkpoints.resume(tmp_path, *fresh(), "r1", make)
    assert resumed.counters is None and resumed.source is None
    assert resumed.set_aside == [str(tmp_path / "last.damaged"), str(tmp_path / "previous.damaged")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "last.damaged", "previous.damaged"]
    assert (
        "training starts from scratch" in caplog.text
        and "previous/adapters.safetensors: damaged safetensors file: truncated" in caplog.text
    )
    # set aside again later: under a new name, the first kept
    checkpoints.save(tmp_path, model, optimizer, {"run": "r1", "iteration": 30})
    cut(tmp_path / "last/best.safetensors", 0)
    assert checkpoints.resume(tmp_path, *fresh(), "r1", make).set_aside == [str(tmp_path / "last.damaged-2")]


def test_a_corrupt_gguf_is_named(gemma_gguf, tmp_path):
    from farense.gguf_import import GGUFFile

    data = gemma_gguf.read_bytes()
    damaged = tmp_path / "gemma.gguf"
    for garble, expected in (
        (lambda d: d[:1_000_000], "truncated or corrupt GGUF file (1,000,000 bytes"),  # a download cut short
        (
            lambda d: d[:24] + struct.pack("<Q", 2**40) + d[32:],
            "truncated or corrupt GGUF file",
        ),  # a key's length garbled
        (lambda d: b"GGUX" + d[4:], "not a readable GGUF file"),
    ):
        damaged.write_bytes(garble(data))
        assert expected in one_line(error_of(GGUFFile, damaged), damaged)


def test_the_base_model_stage_names_a_corrupt_gguf(workflow, gemma_gguf):
    damaged = workflow / "gemma-cortado.gguf"
    damaged.write_bytes(gemma_gguf.read_bytes()[:1_000_000])
    proc = snakemake(workflow, "results/models/base", "--config", f'model={{"base": "{damaged}"}}', check=False)
    assert proc.returncode != 0 and not (workflow / "results/models/base").exists()
    assert job_error(workflow, "build_base_model", proc.stdout).startswith(f"{damaged}: truncated or corrupt GGUF file")
