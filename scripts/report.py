"""Rule script for report: the measured figures -> results/report.html."""

import csv
import json
from pathlib import Path

from farense.report_eval import evaluation_section, headline, knowledge_section, measured_costs, samples_section
from farense.report_html import build_report, esc, model_section
from farense.report_lineage import lineage_section
from farense.runlog import stage
from farense.textio import write_text_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def metrics(path):
    with open(path, encoding="utf-8") as handle:
        return [
            {k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(handle)
        ]


def trained_sentence(base: dict, conversion: dict, trainings: dict, config: dict) -> str:
    """What was trained on what, in one sentence."""
    lora = config["training"]["lora"]
    what = {
        "tiny": "the tiny Mistral-architecture base built by the pipeline",
        "gguf": f"{base.get('name')} imported from {base.get('gguf')}",
    }.get(base.get("kind"), f"the base model {conversion['base']['path']}")
    adapters = " and ".join(
        f"{'QLoRA on the int4 model' if name == 'qlora' else 'LoRA on the unquantized model'} ({s['iterations']} iterations, kept step {s['kept_step']}, the {s['keep']})"
        for name, (s, _) in sorted(trainings.items(), key=lambda kv: kv[0] != "qlora")
    )
    return (
        f"On {esc(what)}, converted to int{conversion['bits']} (group size {conversion['group_size']}), the pipeline trained "
        f"adapters of rank {lora['rank']} and alpha {lora['alpha']} on {', '.join(lora['target_modules'])}: {adapters}."
    )


with stage(smk) as log:
    config = dict(smk.params.config)
    trainings = {}
    for adapter in smk.input.adapters:
        folder = Path(adapter)
        trainings[folder.name] = (load(folder / "training_summary.json"), metrics(folder / "metrics.csv"))
    evals = {Path(p).stem: load(p) for p in smk.input.evaluations}
    runs = {Path(p).stem: load(p) for p in smk.input.runs}  # {job: run record}: the cost figures
    costs = measured_costs(runs)
    base_dir = smk.input.get(
        "base"
    )  # the folder the pipeline made (tiny, GGUF import); absent for a model named in the config
    base_info = Path(base_dir) / "farense_base.json" if isinstance(base_dir, str) and base_dir else None
    base = load(base_info) if base_info and base_info.exists() else {}
    conversion = load(smk.input.conversion)
    samples = config["evaluation"]["samples_in_report"]
    page = build_report(
        load(smk.input.clean_stats),
        load(smk.input.records_stats),
        load(smk.input.split_stats),
        config,
        model=model_section(conversion, base, trainings, runs),
        evaluation=evaluation_section(evals, costs) + samples_section(evals, samples),
        lineage=lineage_section(load(smk.input.lineage_graph)),
        headline=headline(evals, costs),
        knowledge=knowledge_section(evals, load(smk.input.comparison), costs, stand_in=base.get("kind") == "tiny"),
        trained=trained_sentence(base, conversion, trainings, config),
    )
    write_text_atomic(smk.output.html, page)
    log.info("wrote %s (%d bytes)", smk.output.html, len(page.encode("utf-8")))
