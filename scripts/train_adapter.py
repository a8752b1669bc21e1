"""Rule script for train_qlora and train_lora: LoRA adapters on the int4 or the fp16 base
(farense.adapter_job), in this process or as training.processes data-parallel ranks."""

from farense.fastblas import use_fast_blas

blas = use_fast_blas()  # before mlx is imported

import mlx.core as mx  # noqa: E402

from farense.adapter_job import run  # noqa: E402
from farense.distributed import launch  # noqa: E402
from farense.runlog import stage  # noqa: E402

smk = snakemake  # noqa: F821 (injected by Snakemake)

with stage(smk) as log:
    job = {
        "model": smk.params.model, "kind": smk.params.kind, "train": smk.input.train, "valid": smk.input.valid,
        "schema": smk.input.schema, "data_format": smk.params.data_format, "training": dict(smk.params.training), "adapter": smk.output.adapter,
        "checkpoints": smk.params.checkpoints, "run": smk.output.run, "log": smk.log[0],
    }
    processes = smk.params.processes
    if processes == 1:
        run(job, log, blas)
    else:
        launch(job, processes, mx.cuda.is_available() if hasattr(mx, "cuda") else False, log)
