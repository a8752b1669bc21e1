import codecs

import pytest

from farense.textio import atomic_path, decode_bytes, looks_binary, write_text_atomic


@pytest.mark.parametrize(
    "data, encoding, text",
    [
        ("Época – «Farense»".encode("utf-8"), "utf-8", "Época – «Farense»"),
        (codecs.BOM_UTF8 + "São Luís".encode("utf-8"), "utf-8-sig", "São Luís"),
        ("Taça – “Leões”".encode("cp1252"), "cp1252", "Taça – “Leões”"),
        # 0x81 is undefined in cp1252: only latin-1 decodes it
        (b"Le\xf5es \x81", "latin-1", "Leões \x81"),
        (codecs.BOM_UTF16_LE + "Faro".encode("utf-16-le"), "utf-16", "Faro"),
    ],
)
def test_decode_detects_encoding(data, encoding, text):
    assert decode_bytes(data) == (text, encoding)


def test_binary_detection():
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert not looks_binary("Farense".encode("utf-8"))
    assert not looks_binary(codecs.BOM_UTF16_LE + "Faro".encode("utf-16-le"))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


SIGTERMED_STAGE = """
import sys, time
from farense.runlog import stage
from farense.textio import atomic_dir, atomic_path
with stage(sys.argv[1]) as log:
    with atomic_dir(sys.argv[2] + "/adapter") as folder, atomic_path(sys.argv[2] + "/summary.json") as tmp:
        (folder / "adapters.safetensors").write_bytes(b"half")
        tmp.write_text("half")
        print("writing", flush=True)
        time.sleep(60)
"""


def test_a_stage_stopped_by_sigterm_leaves_nothing_half_written(tmp_path):
    """What Slurm sends a job it cancels or that ran past its time limit (runlog.stop_on_sigterm)."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    out = tmp_path / "results"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERMED_STAGE, str(tmp_path / "stage.log"), str(out)],
        cwd=scripts,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []  # neither the outputs nor their temporary files
    assert "stopped by SIGTERM" in (tmp_path / "stage.log").read_text()
