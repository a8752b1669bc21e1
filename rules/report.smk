# The report: one self-contained HTML page built from what the stages measured.


rule report:
    input:
        clean_stats=rules.clean_text.output.stats,
        records_stats=rules.build_records.output.stats,
        split_stats=rules.split_jsonl.output.stats,
        conversion=rules.convert_int4.output.summary,
        base=built_base(),
        adapters=adapter_targets(),
        lineage_graph=rules.lineage.output.graph,
        evaluations=expand("results/eval/{model}.json", model=evaluated_models()),
        comparison=rules.compare_models.output.comparison,
        cards=expand("results/cards/{adapter}.md", adapter=trained_adapters()),
        runs=run_records(),
        code=code_of("report.py"),
    output:
        lineage="results/lineage/report.json",
        html="results/report.html",
    log:
        "results/logs/report.log",
    conda:
        "../environment.yml"
    resources:
        mem_mb=SMALL_JOB_MB,
        runtime=SMALL_JOB_MINUTES,
    params:
        # the configuration the report shows; where the GPU kernels are kept is no part of it (it
        # changes how fast the jobs run, on which machines: a new folder reruns nothing)
        config={k: v for k, v in config.items() if k != "kernel_cache"},
    script:
        "../scripts/report.py"
