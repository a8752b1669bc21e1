"""Rule script for build_records: cleaned corpus -> results/data/records.parquet."""

from farense.records import RecordOptions, build_records
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)
with stage(smk) as log:
    report = build_records(
        smk.input.corpus,
        smk.output.records,
        smk.output.stats,
        RecordOptions.from_config(dict(smk.params.records)),
        workers=smk.threads,
    )
    log.info(
        "records by kind: %s; %d conflicting question(s); %d warning(s)",
        report.counts,
        len(report.conflicts),
        len(report.warnings),
    )
