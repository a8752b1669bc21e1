"""Rule script for clean_text: raw files -> results/clean/corpus.parquet and stats.json."""

from farense.cleaning import CleaningOptions
from farense.corpus import DedupOptions, clean_corpus
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)
with stage(smk) as log:
    cleaning = dict(smk.params.cleaning)
    report = clean_corpus(
        raw_dir=smk.params.raw_dir,
        corpus_path=smk.output.corpus,
        stats_path=smk.output.stats,
        options=CleaningOptions.from_config(cleaning),
        dedup=DedupOptions(
            exact=cleaning["dedup_exact"],
            near=cleaning["dedup_near"],
            threshold=cleaning["near_duplicate_threshold"],
            min_chars=cleaning["dedup_min_chars"],
        ),
        workers=smk.threads,
        allow_outside_links=cleaning["allow_outside_links"],
    )
    log.info("cleaned %d file(s), skipped %d, %d warning(s)", len(report.files), len(report.skipped), len(report.warnings))
