"""Rule script for report: the measured figures -> results/report.html."""

import json

from farense.report_html import build_report
from farense.runlog import stage
from farense.textio import write_text_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


with stage(smk.log[0]) as log:
    page = build_report(load(smk.input.clean_stats), load(smk.input.records_stats), load(smk.input.split_stats), dict(smk.params.config))
    write_text_atomic(smk.output.html, page)
    log.info("wrote %s (%d bytes)", smk.output.html, len(page.encode("utf-8")))
