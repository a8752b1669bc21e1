# Evaluation: the int4 base alone, the LoRA adapter and the QLoRA adapter, each on the test split.


rule evaluate:
    input:
        unpack(evaluation_inputs),
        train=rules.split_jsonl.output.train,
        valid=rules.split_jsonl.output.valid,
        test=rules.split_jsonl.output.test,
        code=code_of("evaluate.py"),
    output:
        lineage="results/lineage/evaluate_{model}.json",
        summary="results/eval/{model}.json",
    wildcard_constraints:
        model="base|lora|qlora",
    params:
        model=model_location("model"),
        evaluation=evaluation_params(),
        training=evaluation_training_params(),
        data_format=config["records"]["format"],
    log:
        "results/logs/evaluate_{model}.log",
    benchmark:
        "results/benchmarks/evaluate_{model}.tsv"
    conda:
        "../environment.yml"
    script:
        "../scripts/evaluate.py"
