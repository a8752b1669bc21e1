"""The report: self-contained, escaped, with the measured data figures."""

import json
import re

from farense.report_html import build_report


def load(wf, name):
    return json.loads((wf / name).read_text())


def test_report_sections_figures_and_no_external_resources(built_data):
    clean = load(built_data, "results/clean/stats.json")
    records = load(built_data, "results/data/records_stats.json")
    split = load(built_data, "results/data/split_stats.json")
    page = build_report(clean, records, split, {"raw_dir": "resources/raw"})
    for heading in ("Summary", "Data", "Files read", "Files skipped", "What cleaning changed", "Records per split and kind", "Leakage check", "Conflicting answers", "Environment"):
        assert f">{heading}" in page, heading
    assert f"{split['splits']['train']['records']} for training" in page
    assert "<svg" in page and "polyline" in page  # the length histogram is drawn inline
    # self-contained: nothing is fetched
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page


def test_text_from_the_corpus_is_escaped(built_data):
    clean = load(built_data, "results/clean/stats.json")
    records = load(built_data, "results/data/records_stats.json")
    split = load(built_data, "results/data/split_stats.json")
    records["conflicts"] = [{"question": "<script>alert('golo')</script>", "question_key": "x", "answers": [{"answer": "<b>negrito</b> & co", "origin": "forum.txt"}]}]
    clean["files_skipped"].append({"path": "<img src=x onerror=alert(1)>.txt", "reason": "empty file"})
    page = build_report(clean, records, split, {"raw_dir": "<script>"})
    assert "<script>" not in page and "<b>negrito" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;golo&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;negrito&lt;/b&gt; &amp; co" in page
