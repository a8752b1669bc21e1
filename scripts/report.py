"""Rule script for report: the measured figures -> results/report.html."""

import csv
import json
from pathlib import Path

from farense.report_html import build_report, model_section
from farense.runlog import stage
from farense.textio import write_text_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def metrics(path):
    with open(path, encoding="utf-8") as handle:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(handle)]


with stage(smk.log[0]) as log:
    trainings = {}
    for adapter in smk.input.adapters:
        folder = Path(adapter)
        trainings[folder.name] = (load(folder / "training_summary.json"), metrics(folder / "metrics.csv"))
    base_dir = smk.input.get("base")  # the tiny base's folder; absent for a model named in the config
    base_info = Path(base_dir) / "farense_base.json" if isinstance(base_dir, str) and base_dir else None
    base = load(base_info) if base_info and base_info.exists() else {}
    model = model_section(load(smk.input.conversion), base, trainings)
    page = build_report(load(smk.input.clean_stats), load(smk.input.records_stats), load(smk.input.split_stats), dict(smk.params.config), model)
    write_text_atomic(smk.output.html, page)
    log.info("wrote %s (%d bytes)", smk.output.html, len(page.encode("utf-8")))
