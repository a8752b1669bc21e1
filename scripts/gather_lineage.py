"""Rule script for lineage: the jobs' provenance entries -> results/lineage.json (one graph)."""

import json
from pathlib import Path

from farense.lineage import write_graph
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    entries = []
    for path in smk.input.entries:
        entry = json.loads(Path(path).read_text(encoding="utf-8"))
        entry["entry_file"] = path
        entries.append(entry)
    data = write_graph(entries, smk.output.graph)
    log.info("%d artifacts, %d derivations from %d jobs", len(data["artifacts"]), len(data["edges"]), len(data["jobs"]))
