# Data stages: raw files -> cleaned corpus -> training records -> train/valid/test JSONL.
# Each runs `threads` worker processes (cleaning.threads, records.threads, split.threads; capped
# by --cores locally, the CPUs a cluster job asks for): documents are cleaned and chunked in
# parallel, with the same output bytes whatever the number. Memory and time follow the corpus.


rule clean_text:
    input:
        raw=raw_files(),
        code=code_of("clean_text.py"),
    output:
        lineage="results/lineage/clean_text.json",
        corpus="results/clean/corpus.parquet",
        stats="results/clean/stats.json",
    log:
        "results/logs/clean_text.log",
    benchmark:
        "results/benchmarks/clean_text.tsv"
    conda:
        "../environment.yml"
    threads: config["cleaning"]["threads"]
    resources:
        mem_mb=data_stage_mem,
        runtime=data_stage_minutes(CORPUS_MB),
    params:
        raw_dir=lambda wildcards: config["raw_dir"],
        cleaning=stage_options("cleaning"),
    script:
        "../scripts/clean_text.py"


rule build_records:
    input:
        corpus=rules.clean_text.output.corpus,
        code=code_of("build_records.py"),
    output:
        lineage="results/lineage/build_records.json",
        records="results/data/records.parquet",
        stats="results/data/records_stats.json",
    log:
        "results/logs/build_records.log",
    benchmark:
        "results/benchmarks/build_records.tsv"
    conda:
        "../environment.yml"
    threads: config["records"]["threads"]
    resources:
        mem_mb=data_stage_mem,
        runtime=data_stage_minutes(CORPUS_MB),
    params:
        records=stage_options("records"),
    script:
        "../scripts/build_records.py"


rule split_jsonl:
    input:
        records=rules.build_records.output.records,
        schema=jsonl_schema(),
        code=code_of("split_jsonl.py"),
    output:
        lineage="results/lineage/split_jsonl.json",
        train="results/data/train.jsonl",
        valid="results/data/valid.jsonl",
        test="results/data/test.jsonl",
        stats="results/data/split_stats.json",
    log:
        "results/logs/split_jsonl.log",
    benchmark:
        "results/benchmarks/split_jsonl.tsv"
    conda:
        "../environment.yml"
    threads: config["split"]["threads"]
    resources:
        mem_mb=data_stage_mem,
        runtime=data_stage_minutes(CORPUS_MB),
    params:
        split=stage_options("split"),
    script:
        "../scripts/split_jsonl.py"
