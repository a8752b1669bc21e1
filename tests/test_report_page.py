"""The report as built by the pipeline: sections with the measured numbers, no network, and a
page that headless Chromium renders."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))
SECTIONS = (
    "What the fine-tuned model knows",
    "Summary",
    "LoRA vs QLoRA",
    "Sample answers",
    "Data",
    "Model and training",
    "Lineage",
    "Environment",
)


def test_the_report_shows_the_measured_evaluation(tiny_report):
    page = (tiny_report / "results/report.html").read_text()
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in page, heading
    qlora = json.loads((tiny_report / "results/eval/qlora.json").read_text())
    base = json.loads((tiny_report / "results/eval/base.json").read_text())
    # the comparison table carries the numbers of this run's evaluation files
    assert f"{qlora['loss']['test']['perplexity']:.4g}" in page and f"{base['loss']['test']['perplexity']:.4g}" in page
    assert "int4 base, no adapter" in page and "LoRA (unquantized base)" in page and "QLoRA (int4 base)" in page
    assert "unquantized base, no adapter" in page
    # the first section: fact accuracy on seen facts with its interval, per model, and the paired LoRA - QLoRA difference
    knows = page.split("<h2>What the fine-tuned model knows</h2>")[1].split("<h2>")[0]
    seen = qlora["answers"]["by_support"]["seen_fact"]
    assert (
        f"{seen['fact_accuracy']:.3f} [{seen['fact_accuracy_ci'][0]:.2f}, {seen['fact_accuracy_ci'][1]:.2f}]" in knows
    )
    assert "LoRA minus QLoRA on seen facts" in knows and "<svg" in knows and "hallucination rate" in knows
    assert "tiny stand-in" in knows  # the figures of a model that cannot know the facts say so
    assert "Seen facts</h3>" in page and "Unseen facts</h3>" in page  # sample answers by label
    first = qlora["answers"]["per_question"][0]
    from farense.report_html import esc

    assert esc(first["question"]) in page and esc(first["reference"]) in page
    assert "Stage graph" in page and "sha256" in page and "train_qlora" in page
    assert (
        not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<link" not in page and "@import" not in page
    )


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(
    not chromium() and not os.environ.get("FARENSE_REQUIRE_CHROMIUM"), reason="no Chromium here (CI installs Debian's)"
)
def test_headless_chromium_renders_the_report(tiny_report, tmp_path):
    browser = chromium()
    assert browser, "FARENSE_REQUIRE_CHROMIUM is set but Chromium is not installed"
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (tiny_report / "results/report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    # the browser parsed the page into every section, with the charts as SVG
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert headings == list(SECTIONS), headings
    assert dom.count("<svg") >= 7 and dom.count("<polyline") >= 6
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--window-size=1200,3000", f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 3000)
    # a blank or unstyled-empty page compresses to a few kB; the report's tables, text and charts do not
    assert len(data) > 100_000, len(data)
