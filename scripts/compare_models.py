"""Rule script for compare_models: the evaluations -> results/eval/comparison.json (paired differences)."""

import json
from pathlib import Path

from farense.comparison import compare
from farense.runlog import stage
from farense.textio import write_json_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    evals = {Path(p).stem: json.loads(Path(p).read_text(encoding="utf-8")) for p in smk.input.evaluations}
    options = dict(smk.params.evaluation)
    result = compare(evals, seed=options["seed"], samples=options["bootstrap_samples"])
    for name, pair in result.items():
        seen = pair["seen_fact"]["fact_correct"]
        log.info(
            "%s, seen facts: fact accuracy difference %s, 95%% interval %s",
            pair["label"],
            seen and seen["difference"],
            seen and seen["ci"],
        )
    write_json_atomic(
        smk.output.comparison, {"pairs": result, "seed": options["seed"], "samples": options["bootstrap_samples"]}
    )
