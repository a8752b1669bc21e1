"""Rule script for evaluate: one model (base, base_full, lora or qlora) on the test split ->
results/eval/{model}.json (farense.eval_job)."""

from farense.preload import blas  # first: loads the BLAS before mlx is imported

from farense.eval_job import run
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    job = {
        "name": smk.wildcards.model,
        "model": smk.params.model,
        "adapter": smk.input.get("adapter"),
        "evaluation": dict(smk.params.evaluation),
        "training": dict(smk.params.training),
        "data_format": smk.params.data_format,
        "test": smk.input.test,
        "schema": smk.input.schema,
        "summary": smk.output.summary,
        "run": smk.output.run,
    }
    run(job, log, blas)
