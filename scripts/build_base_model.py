"""Rule script for build_base_model: results/models/base/ in Hugging Face layout, either the tiny
model built offline or a GGUF file (a path, or one a package carries) imported (farense.base_job)."""

from farense.preload import blas  # first: loads the BLAS before mlx is imported

from farense.base_job import run
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    job = {
        "base": dict(smk.params.base),
        "tiny": dict(smk.params.tiny),
        "corpus": smk.input.get("corpus"),
        "train": smk.input.get("train"),
        "schema": smk.input.get("schema"),
        "model": smk.output.model,
        "run": smk.output.run,
    }
    run(job, log, blas)
