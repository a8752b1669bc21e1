"""Rule script for lineage: the jobs' provenance entries -> results/lineage.json (one graph)."""

from farense.provenance import load_entries, write_graph
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    entries = load_entries(smk.input.entries)
    data = write_graph(entries, smk.output.graph)
    log.info("%d artifacts, %d derivations from %d jobs", len(data["artifacts"]), len(data["edges"]), len(data["jobs"]))
