# Lineage: the provenance entries every job wrote, gathered into one graph.


rule lineage:
    input:
        entries=lineage_entries(),
        code=code_of("gather_lineage.py"),
    output:
        graph="results/lineage.json",
        lineage="results/lineage/lineage.json",
    log:
        "results/logs/lineage.log",
    conda:
        "../environment.yml"
    resources:
        mem_mb=SMALL_JOB_MB,
        runtime=SMALL_JOB_MINUTES,
    script:
        "../scripts/gather_lineage.py"
