"""Rule script for train_qlora and train_lora: LoRA adapters on the int4 or the fp16 base
(farense.adapter_job), in this process or as training.processes data-parallel ranks."""

from farense.preload import blas  # first: loads the BLAS before mlx is imported

import mlx.core as mx

from farense.adapter_job import run
from farense.distributed import launch
from farense.runlog import stage

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    job = {
        "model": smk.params.model,
        "kind": smk.params.kind,
        "train": smk.input.train,
        "valid": smk.input.valid,
        "schema": smk.input.schema,
        "data_format": smk.params.data_format,
        "training": dict(smk.params.training),
        "adapter": smk.output.adapter,
        "checkpoints": smk.params.checkpoints,
        "run": smk.output.run,
        "log": smk.log[0],
    }
    processes = smk.params.processes
    if processes == 1:
        run(job, log, blas)
    else:
        launch(job, processes, mx.cuda.is_available() if hasattr(mx, "cuda") else False, log)
