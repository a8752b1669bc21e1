# The Farense QLoRA pipeline. This file only wires things together: the stages live in rules/,
# their logic in scripts/ (importable, unit-tested), their settings in config/.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# Stops on a wrong type or an unknown key with one line naming each, then fills in the schema's
# defaults (what snakemake.utils.validate does, without reading and checking the schema again).
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from farense.config_check import coerce_config, config_errors, fill_defaults, load_schema, model_config_errors

CONFIG_SCHEMA = "config/schemas/config.schema.yaml"
schema = load_schema(str(Path(workflow.basedir) / CONFIG_SCHEMA))
coerce_config(config, schema)
problems = config_errors(config, schema)
if problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems))
fill_defaults(config, schema)
problems = model_config_errors(config)
if problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems))

# A run killed with SIGKILL leaves Snakemake's lock files behind, and the next run would stop until
# `snakemake --unlock`; they are removed here when no other Snakemake of this workflow is alive in
# this folder (farense.stale_locks), so that recovering from a kill is running the same command
# again (with profiles/default, which reruns the jobs the kill interrupted).
from farense.stale_locks import release_stale_locks

if release_stale_locks():
    logger.warning("removed the lock files of a Snakemake run that was killed (no Snakemake runs here now)")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/evaluate.smk"
include: "rules/lineage.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
