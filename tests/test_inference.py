"""The trained model in the user's hands: the inference script, fused and exported models (the server:
tests/test_serving.py)."""

import json
import subprocess
import sys
import time

from conftest import ROOT

SCRIPT = str(ROOT / "scripts/cli/inference_qlora.py")


def ask(cwd, *args, stdin=None):
    proc = subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        **({"input": stdin} if stdin is not None else {}),
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_answers_with_the_qlora_adapter_as_json(tiny_adapters):
    code, out, _ = ask(tiny_adapters, "--json", "--max-tokens", "12", "Qual foi a melhor classificação do Farense?")
    result = json.loads(out)
    assert code == 0 and result["status"] == "ok"
    assert result["model"] == "results/models/base-int4" and result["adapter"] == "results/adapters/qlora"
    assert isinstance(result["response"], str) and 0 < result["tokens"] <= 12 and result["seconds"] < 10
    assert set(result) >= {"prompt", "response", "model", "adapter", "tokens", "seconds", "status"}


def test_plain_output_and_the_other_choices(tiny_adapters):
    code, out, _ = ask(tiny_adapters, "--max-tokens", "5", "Onde joga o Farense?")
    assert code == 0 and not out.startswith("{")
    code, out, _ = ask(tiny_adapters, "--json", "--adapter", "lora", "--max-tokens", "5", "Onde joga o Farense?")
    assert code == 0 and json.loads(out)["model"] == "results/models/base"
    code, out, _ = ask(
        tiny_adapters,
        "--json",
        "--adapter",
        "none",
        "--temperature",
        "0.7",
        "--max-tokens",
        "5",
        "Onde joga o Farense?",
    )
    assert code == 0 and json.loads(out)["adapter"] is None
    # greedy decoding is deterministic
    first = json.loads(ask(tiny_adapters, "--json", "--max-tokens", "8", "Quem foi Paco Fortes?")[1])["response"]
    second = json.loads(ask(tiny_adapters, "--json", "--max-tokens", "8", "Quem foi Paco Fortes?")[1])["response"]
    assert first == second


def test_errors_are_clear_and_non_zero(tiny_adapters, tmp_path):
    code, out, _ = ask(tiny_adapters, "--json", "   ")
    result = json.loads(out)
    assert (
        code == 1
        and result["status"] == "error"
        and result["error"] == "the prompt is empty"
        and result["response"] is None
    )
    code, out, err = ask(tmp_path, "Olá")
    assert (
        code == 1
        and out == ""
        and "no trained qlora adapter in results/adapters/qlora yet" in err
        and "snakemake --cores 1 results/adapters/qlora" in err
    )
    code, out, _ = ask(tmp_path, "--json", "Olá")
    assert code == 1 and json.loads(out)["status"] == "error"
    code, out, _ = ask(tiny_adapters, "--json", "--fused", str(tmp_path / "nada"), "Olá")
    assert code == 1 and "no fused model" in json.loads(out)["error"]


def ask_bytes(cwd, *args, stdin=b""):
    """The script given raw bytes (arguments, standard input), its JSON answer."""
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--json", *args], cwd=cwd, input=stdin, capture_output=True, timeout=120
    )
    return proc.returncode, json.loads(proc.stdout.decode("utf-8"))


def test_prompts_too_large_not_utf8_or_empty_get_a_clear_error(tiny_adapters):
    megabyte = ("O Farense jogou em Faro. " * 40_000).encode()
    cases = [
        # 1 MB: on standard input (a command-line argument holds at most 128 KiB), refused unread
        (["-"], megabyte, "the prompt on standard input is more than 262,144 bytes"),
        ([b"Ol\xe1 Farense"], b"", "the prompt is not valid UTF-8 (byte 0xe1 at offset 2)"),  # latin-1, not UTF-8
        (["-"], b"Onde joga o \xff?", "the prompt is not valid UTF-8 (byte 0xff at offset 12)"),
        (["-"], b" \n\t ", "the prompt is empty"),
        ([""], b"", "the prompt is empty"),
        # 100 kB fits the size cap; its tokens do not fit the tiny model's context
        (
            ["--max-tokens", "5", "Onde joga o Farense? " * 5000],
            b"",
            "tokens; with 5 to generate that is more than the model's context of 2,048 tokens",
        ),
    ]
    for args, stdin, message in cases:
        started = time.perf_counter()
        code, result = ask_bytes(tiny_adapters, *args, stdin=stdin)
        assert (
            code == 1 and result["status"] == "error" and message in result["error"] and result["response"] is None
        ), result
        assert len(json.dumps(result)) < 2_000 and time.perf_counter() - started < 60  # the error echoes no megabytes
    code, result = ask_bytes(tiny_adapters, "-", stdin=b"Ol\xe1")
    assert result["prompt"] == "Ol\ufffd"  # what was refused, printable
    code, out, err = ask(tiny_adapters, "-", stdin="Onde joga o Farense?\n")
    assert code == 0 and out.strip() and not err.startswith("error")  # a prompt on standard input is answered
    code, out, err = ask(tiny_adapters, "-", stdin="")
    assert code == 1 and out == "" and err.strip() == "error: the prompt is empty"


def test_a_fused_model_loads_and_answers(tiny_adapters, tmp_path):
    fused = tmp_path / "fused-qlora"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "fuse",
            "--model",
            "results/models/base-int4",
            "--adapter-path",
            "results/adapters/qlora",
            "--save-path",
            str(fused),
        ],
        cwd=tiny_adapters,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # mlx-lm folds the adapter into the weights and quantizes again: still an int4 model, whose
    # answers can differ slightly from base + adapter (on the near-random test model they do).
    assert json.loads((fused / "config.json").read_text())["quantization"]["bits"] == 4
    code, out, _ = ask(tiny_adapters, "--json", "--fused", str(fused), "--max-tokens", "8", "Quem foi Hassan Nader?")
    result = json.loads(out)
    assert (
        code == 0
        and result["status"] == "ok"
        and result["adapter"] is None
        and result["model"] == str(fused)
        and result["tokens"] > 0
    )


def test_export_and_fuse_carry_the_model_card(tiny_report, tmp_path):
    script = str(ROOT / "scripts" / "cli" / "export_adapter.py")
    card = (tiny_report / "results/cards/qlora.md").read_text()

    def run(*args):
        return subprocess.run(
            [sys.executable, script, *args], cwd=tiny_report, capture_output=True, text=True, timeout=300
        )

    exported = run(str(tmp_path / "adapter"))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapters.safetensors",
        "metrics.csv",
        "training_summary.json",
    ]
    assert (tmp_path / "adapter/README.md").read_text() == card
    again = run(str(tmp_path / "adapter"))
    assert again.returncode == 1 and "exists already" in again.stderr
    fused = run(str(tmp_path / "fused"), "--fuse")
    assert fused.returncode == 0, fused.stderr
    assert (tmp_path / "fused/README.md").read_text() == card and (tmp_path / "fused/config.json").exists()
    code, out, _ = ask(
        tiny_report, "--json", "--fused", str(tmp_path / "fused"), "--max-tokens", "4", "Quem foi Hassan Nader?"
    )
    assert code == 0 and json.loads(out)["status"] == "ok"
    missing = run(str(tmp_path / "other"), "--results", str(tmp_path / "nothing"))
    assert (
        missing.returncode == 1 and "no trained qlora adapter" in missing.stderr and not (tmp_path / "other").exists()
    )
