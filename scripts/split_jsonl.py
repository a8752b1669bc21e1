"""Rule script for split_jsonl: records -> results/data/{train,valid,test}.jsonl and split_stats.json."""

from pathlib import Path

from farense.runlog import stage
from farense.splitting import SplitOptions, split_jsonl

smk = snakemake  # noqa: F821 (injected by Snakemake)
with stage(smk) as log:
    options = SplitOptions.from_config(dict(smk.params.split))
    summary = split_jsonl(
        smk.input.records,
        Path(smk.output.train).parent,
        smk.output.stats,
        smk.input.schema,
        options,
        workers=smk.threads,
    )
    log.info(
        "records per split: %s; leakage check passed: %s",
        {s: v["records"] for s, v in summary["splits"].items()},
        summary["leakage_check"]["passed"],
    )
