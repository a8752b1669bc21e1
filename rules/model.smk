# Model stages: the base model (the tiny one built offline, a GGUF imported, or a model folder or
# hub id read where it is), its int4 conversion, and the adapters trained on both.
# A job that measures its own speed and memory writes them to its run record (results/runs/,
# farense.run_record), never into the model or adapter folder: those hash the same on every build.
# Each asks for a GPU (gpu=1): MLX computes on it where it has one, and profiles/default runs one
# such job at a time, so that two never share one GPU's (or a Mac's unified) memory. Memory
# follows the base's size (farense.resources); training's time limit is training.runtime.


rule build_base_model:
    input:
        unpack(base_model_sources),
        code=code_of("build_base_model.py"),
    output:
        lineage="results/lineage/build_base_model.json",
        model=directory("results/models/base"),
        run="results/runs/build_base_model.json",
    log:
        "results/logs/build_base_model.log",
    benchmark:
        "results/benchmarks/build_base_model.tsv"
    conda:
        "../environment.yml"
    resources:
        mem_mb=MODEL_MEM_MB["build"],
        runtime=MODEL_BUILD_MINUTES,
        gpu=1,
    params:
        base=BASE.params(),
        tiny=config["model"]["tiny"] if BASE.kind == "tiny" else {},
    script:
        "../scripts/build_base_model.py"


rule convert_int4:
    input:
        base=built_base(),
        code=code_of("convert_int4.py"),
    output:
        lineage="results/lineage/convert_int4.json",
        model=directory("results/models/base-int4"),
        summary="results/models/conversion.json",
    log:
        "results/logs/convert_int4.log",
    benchmark:
        "results/benchmarks/convert_int4.tsv"
    conda:
        "../environment.yml"
    resources:
        mem_mb=MODEL_MEM_MB["convert"],
        runtime=MODEL_BUILD_MINUTES,
        gpu=1,
    params:
        base=model_location("base"),
        bits=config["quantization"]["bits"],
        group_size=config["quantization"]["group_size"],
    script:
        "../scripts/convert_int4.py"


rule train_qlora:
    input:
        model=rules.convert_int4.output.model,
        train=rules.split_jsonl.output.train,
        valid=rules.split_jsonl.output.valid,
        schema=jsonl_schema(),
        code=code_of("train_adapter.py"),
    output:
        lineage="results/lineage/train_qlora.json",
        adapter=directory("results/adapters/qlora"),
        run="results/runs/train_qlora.json",
    log:
        "results/logs/train_qlora.log",
    benchmark:
        "results/benchmarks/train_qlora.tsv"
    conda:
        "../environment.yml"
    resources:
        mem_mb=MODEL_MEM_MB["compute"],
        runtime=config["training"]["runtime"],
        gpu=1,
    params:
        model=model_location("model"),
        kind="int4",
        training=adapter_training,
        data_format=config["split"]["format"],
        checkpoints=checkpoint_folder,
        processes=config["training"]["processes"],
    script:
        "../scripts/train_adapter.py"


rule train_lora:
    input:
        model=built_base(),
        train=rules.split_jsonl.output.train,
        valid=rules.split_jsonl.output.valid,
        schema=jsonl_schema(),
        code=code_of("train_adapter.py"),
    output:
        lineage="results/lineage/train_lora.json",
        adapter=directory("results/adapters/lora"),
        run="results/runs/train_lora.json",
    log:
        "results/logs/train_lora.log",
    benchmark:
        "results/benchmarks/train_lora.tsv"
    conda:
        "../environment.yml"
    resources:
        mem_mb=MODEL_MEM_MB["compute"],
        runtime=config["training"]["runtime"],
        gpu=1,
    params:
        model=model_location("model"),
        kind="fp16",
        training=adapter_training,
        data_format=config["split"]["format"],
        checkpoints=checkpoint_folder,
        processes=config["training"]["processes"],
    script:
        "../scripts/train_adapter.py"


# More training runs of each adapter (training.replicates): the same recipe from the next seeds,
# into results/adapters/qlora-seed1, ... They are evaluated and compared (rules/evaluate.smk), so
# that the report's intervals hold what a training run's seed changes; the model cards, export and
# serving use the first run. Their seed is the wildcard (adapter_training).
use rule train_qlora as train_qlora_replicate with:
    output:
        lineage="results/lineage/train_qlora-seed{seed}.json",
        adapter=directory("results/adapters/qlora-seed{seed}"),
        run="results/runs/train_qlora-seed{seed}.json",
    log:
        "results/logs/train_qlora-seed{seed}.log",
    benchmark:
        "results/benchmarks/train_qlora-seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",


use rule train_lora as train_lora_replicate with:
    output:
        lineage="results/lineage/train_lora-seed{seed}.json",
        adapter=directory("results/adapters/lora-seed{seed}"),
        run="results/runs/train_lora-seed{seed}.json",
    log:
        "results/logs/train_lora-seed{seed}.log",
    benchmark:
        "results/benchmarks/train_lora-seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
