# The Farense QLoRA pipeline. This file only wires things together: the stages live in rules/,
# their logic in scripts/ (importable, unit-tested), their settings in config/.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# Fills defaults and stops on a wrong type or an unknown key, naming it.
validate(config, schema="config/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/report.smk"


rule all:
    input:
        "results/report.html",
    default_target: True
