"""Rule script for clean_text: raw files -> results/clean/corpus.parquet and stats.json."""

from farense.corpus import clean_corpus, clean_text_options
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)
with stage(smk) as log:
    options, dedup, allow_outside_links = clean_text_options(dict(smk.params.cleaning))
    report = clean_corpus(
        raw_dir=smk.params.raw_dir,
        corpus_path=smk.output.corpus,
        stats_path=smk.output.stats,
        options=options,
        dedup=dedup,
        workers=smk.threads,
        allow_outside_links=allow_outside_links,
    )
    log.info(
        "cleaned %d file(s), skipped %d, %d warning(s)", len(report.files), len(report.skipped), len(report.warnings)
    )
