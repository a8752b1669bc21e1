"""Rule script for compare_models: the evaluations -> results/eval/comparison.json (paired
differences; with training.replicates, also over the training runs)."""

import json
from pathlib import Path

from farense.comparison import across_runs, compare
from farense.runlog import stage
from farense.textio import write_json_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:

    def read(paths):
        return {Path(p).stem: json.loads(Path(p).read_text(encoding="utf-8")) for p in paths}

    evals, replicates = read(smk.input.evaluations), read(smk.input.replicates)
    options = dict(smk.params.evaluation)
    result = compare(evals, seed=options["seed"], samples=options["bootstrap_samples"])
    runs = across_runs(
        evals, replicates, smk.params.training_seed, seed=options["seed"], samples=options["bootstrap_samples"]
    )
    for name, pair in result.items():
        seen = pair["seen_fact"]["fact_correct"]
        log.info(
            "%s, seen facts: fact accuracy difference %s, 95%% interval %s",
            pair["label"],
            seen and seen["difference"],
            seen and seen["ci"],
        )
    if runs:
        lq = runs["pairs"].get("lora-qlora", {}).get("seen_fact", {}).get("fact_correct")
        log.info("over %s training runs: LoRA minus QLoRA, seen facts: %s", lq and lq["runs"], lq)
    write_json_atomic(
        smk.output.comparison,
        {"pairs": result, "runs": runs, "seed": options["seed"], "samples": options["bootstrap_samples"]},
    )
