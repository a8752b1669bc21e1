# Evaluation: the int4 base alone, the unquantized base alone, the LoRA adapter and the QLoRA
# adapter (and their replicates, rules/model.smk), each on the test split; their paired
# differences; a model card for each adapter.
# An evaluation asks for a GPU and memory as training does (rules/model.smk).


rule evaluate:
    input:
        unpack(evaluation_inputs),
        train=rules.split_jsonl.output.train,
        valid=rules.split_jsonl.output.valid,
        test=rules.split_jsonl.output.test,
        schema=jsonl_schema(),
        code=code_of("evaluate.py"),
    output:
        lineage="results/lineage/evaluate_{model}.json",
        summary="results/eval/{model}.json",
        run="results/runs/evaluate_{model}.json",
    log:
        "results/logs/evaluate_{model}.log",
    benchmark:
        "results/benchmarks/evaluate_{model}.tsv"
    wildcard_constraints:
        model=r"base|base_full|lora|qlora|(lora|qlora)-seed\d+",
    conda:
        "../environment.yml"
    resources:
        mem_mb=MODEL_MEM_MB["compute"],
        runtime=config["evaluation"]["runtime"],
        gpu=1,
    params:
        model=model_location("model"),
        evaluation=evaluation_params(),
        training=evaluation_training_params(),
        data_format=config["split"]["format"],
    script:
        "../scripts/evaluate.py"


rule compare_models:
    input:
        evaluations=expand("results/eval/{model}.json", model=evaluated_models()),
        replicates=expand("results/eval/{model}.json", model=replicates()),
        code=code_of("compare_models.py"),
    output:
        lineage="results/lineage/compare_models.json",
        comparison="results/eval/comparison.json",
    log:
        "results/logs/compare_models.log",
    conda:
        "../environment.yml"
    resources:
        mem_mb=SMALL_JOB_MB,
        runtime=SMALL_JOB_MINUTES,
    params:
        evaluation=evaluation_params(),
        training_seed=config["training"]["seed"],
    script:
        "../scripts/compare_models.py"


rule model_card:
    input:
        unpack(card_inputs),
        evaluation="results/eval/{adapter}.json",
        comparison=rules.compare_models.output.comparison,
        train=rules.split_jsonl.output.train,
        valid=rules.split_jsonl.output.valid,
        test=rules.split_jsonl.output.test,
        code=code_of("model_card.py"),
    output:
        lineage="results/lineage/model_card_{adapter}.json",
        card="results/cards/{adapter}.md",
    log:
        "results/logs/model_card_{adapter}.log",
    wildcard_constraints:
        adapter="lora|qlora",
    conda:
        "../environment.yml"
    resources:
        mem_mb=SMALL_JOB_MB,
        runtime=SMALL_JOB_MINUTES,
    params:
        model=model_location("model"),
        base_name=BASE.name,
    script:
        "../scripts/model_card.py"
