# The Farense QLoRA pipeline. This file only wires things together: the stages live in rules/,
# their logic in scripts/ (importable, unit-tested), their settings in config/.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# Stops on a wrong type or an unknown key with one line naming each, then lets Snakemake's
# validation fill in the defaults.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from farense.config_check import coerce_config, config_errors, load_schema, model_config_errors

CONFIG_SCHEMA = "config/schemas/config.schema.yaml"
schema = load_schema(str(Path(workflow.basedir) / CONFIG_SCHEMA))
coerce_config(config, schema)
problems = config_errors(config, schema)
if problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems))
validate(config, schema=CONFIG_SCHEMA)
problems = model_config_errors(config)
if problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems))


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/evaluate.smk"
include: "rules/lineage.smk"
include: "rules/report.smk"


rule all:
    input:
        "results/report.html",
    default_target: True
