# Helpers shared by the rules.
import os
import sys
from pathlib import Path

from farense.base_model import resolve
from farense.errors import PipelineError
from farense.imports import project_modules
from farense.kernel_cache import ENV as KERNEL_CACHE_ENV
from farense.memory_presets import graph_settings, preset_megabytes, preset_name, resolve_training
from farense.raw_files import scan
from farense.resources import (
    SMALL_JOB_MB,
    SMALL_JOB_MINUTES,
    base_weights_mb,
    corpus_megabytes,
    data_stage_mem_mb,
    data_stage_minutes,
    model_build_minutes,
    model_stage_mem_mb,
)

try:
    BASE = resolve(config["model"]["base"])  # what model.base names; "auto" decided here, once
except PipelineError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None


def raw_files():
    """Every file under raw_dir that cleaning reads (farense.raw_files: no link out of raw_dir, no
    FIFO), so that adding, editing or removing one reruns cleaning."""
    raw = Path(config["raw_dir"])
    if not raw.is_dir():
        return []  # clean_text then stops with a message naming raw_dir
    return [str(p) for p in scan(raw, config["cleaning"]["allow_outside_links"])[0]]


# What the jobs ask a scheduler for (farense.resources): the data stages' memory and time follow
# the corpus; the model stages' memory follows the base's weights, capped for training and
# evaluation by the memory preset.
CORPUS_MB = corpus_megabytes(raw_files())
WEIGHTS_MB = base_weights_mb(BASE, config["model"]["tiny"])
MODEL_MEM_MB = model_stage_mem_mb(WEIGHTS_MB, preset_megabytes(preset_name(config["training"])))
MODEL_BUILD_MINUTES = model_build_minutes(WEIGHTS_MB)


def data_stage_mem(wildcards, threads):
    """A data stage's memory for the workers it is given (--cores caps `threads` locally)."""
    return data_stage_mem_mb(threads, CORPUS_MB)


def code_of(script):
    """The script and the project modules it imports, directly or through each other; as inputs, editing one
    reruns the job (Snakemake itself only tracks the script file)."""
    script = Path(workflow.basedir) / "scripts" / script
    paths = [str(script)] + project_modules(script)
    return [os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p for p in paths]


def stage_options(section):
    """A config section as a stage's params: without `threads`, which changes how fast a stage
    runs, not what it writes (so a new value reruns nothing)."""
    return {k: v for k, v in config[section].items() if k != "threads"}


def jsonl_schema():
    return f"config/schemas/jsonl_{config['split']['format']}.schema.yaml"


def built_base():
    """The base folder the pipeline makes (the tiny model, an imported GGUF); [] for a model folder or
    hub id named in the config, which the stages read where it is."""
    return rules.build_base_model.output.model if BASE.built else []


def base_model_sources(wildcards):
    """What build_base_model reads: the corpus and training split (tiny), the GGUF file (a path);
    a packaged GGUF is recorded by package, version and sha256 in the params."""
    if BASE.kind == "tiny":
        return {
            "corpus": rules.clean_text.output.corpus,
            "train": rules.split_jsonl.output.train,
            "schema": jsonl_schema(),
        }
    return {"gguf": BASE.path} if BASE.kind == "gguf" else {}


def model_location(key):
    """A params function: the model folder given as input `key`, else where model.base points."""
    return lambda wildcards, input: input.get(key) or BASE.path or BASE.name


def training_params():
    """The effective training options: the memory preset's values, overridden by explicit config keys."""
    return resolve_training(config["training"], Path(workflow.basedir) / "config" / "memory")


def adapter_training(wildcards):
    """A training job's options: training_params, with the seed of a replicate's wildcard."""
    seed = getattr(wildcards, "seed", None)
    return training_params() | ({"seed": int(seed)} if seed is not None else {})


def checkpoint_folder(wildcards, output):
    """Where a training job keeps its checkpoints: results/checkpoints/<its adapter's name>."""
    return f"results/checkpoints/{Path(output.adapter).name}"


# Low-memory training on Linux: smaller CUDA graphs (farense.memory_presets.LOW_MEMORY_GRAPHS). MLX
# reads them once per process, so they are set here, before any job starts, and every job of the
# run inherits them (a training job that picks just in time sets them itself: farense.adapter_job);
# a value already in the environment wins. The run records name them.
for _name, _value in graph_settings(training_params()["grad_checkpoint"], sys.platform).items():
    os.environ.setdefault(_name, _value)

# The GPU kernel cache the jobs share (farense.kernel_cache), given to them through the environment
# rather than as a param: it changes how fast a job runs, not what it writes.
if config["kernel_cache"]:
    os.environ.setdefault(KERNEL_CACHE_ENV, os.path.abspath(config["kernel_cache"]))


def trained_adapters():
    """QLoRA always; the LoRA baseline unless training.train_lora is off."""
    return ["qlora"] + (["lora"] if config["training"]["train_lora"] else [])


def replicates():
    """The extra training runs' names (training.replicates - 1 per trained adapter): qlora-seed1, ..."""
    first = config["training"]["seed"]
    seeds = range(first + 1, first + config["training"]["replicates"])
    return [f"{name}-seed{seed}" for name in trained_adapters() for seed in seeds]


def route(name):
    """The model an evaluation or adapter name is a run of: qlora-seed1 -> qlora."""
    return name.split("-seed")[0]


def adapter_output(name):
    """The adapter folder of a trained adapter or a replicate."""
    if name in ("lora", "qlora"):
        return (rules.train_lora if name == "lora" else rules.train_qlora).output.adapter
    return f"results/adapters/{name}"


def adapter_targets():
    return [adapter_output(name) for name in trained_adapters()]


def loaded_model(name):
    """The model folder an evaluation or adapter named `name` uses: the int4 one for base and
    qlora, the unquantized base the pipeline made for base_full and lora ([] when model.base
    names a folder or hub id, read where it is)."""
    return rules.convert_int4.output.model if route(name) in ("base", "qlora") else built_base()


def evaluation_training_params():
    """The training settings the evaluation reuses (the loss is computed as training computes it);
    only these, so that a new learning rate does not re-evaluate the base model."""
    resolved = training_params()
    return {key: resolved[key] for key in ("batch_size", "max_seq_length", "mask_prompt", "compute")}


def evaluation_params():
    """The evaluation keys that change an evaluation (samples_in_report only changes the report,
    runtime only the time limit a scheduler gives the job)."""
    return {key: value for key, value in config["evaluation"].items() if key not in ("samples_in_report", "runtime")}


def evaluated_models():
    """The int4 base, the unquantized base and qlora always; lora when it is trained."""
    return ["base", "base_full", "qlora"] + (["lora"] if config["training"]["train_lora"] else [])


def evaluation_inputs(wildcards):
    """The model an evaluation loads, and the adapter on it."""
    inputs = {"model": loaded_model(wildcards.model)} if loaded_model(wildcards.model) else {}
    if route(wildcards.model) in ("lora", "qlora"):
        inputs["adapter"] = adapter_output(wildcards.model)
    return inputs


def card_inputs(wildcards):
    """The adapter a model card describes, the model it was trained on, and the base the pipeline made."""
    inputs = {"adapter": adapter_output(wildcards.adapter)}
    if loaded_model(wildcards.adapter):
        inputs["model"] = loaded_model(wildcards.adapter)
    if built_base():
        inputs["base"] = built_base()
    return inputs


def run_records():
    """The run records (results/runs/<job>.json: time, memory, speed, machine) of the jobs whose cost
    the report shows: base model, training, evaluation."""
    records = [rules.train_qlora.output.run] + (
        [rules.train_lora.output.run] if config["training"]["train_lora"] else []
    )
    records += expand("results/runs/evaluate_{model}.json", model=evaluated_models())
    return records + ([rules.build_base_model.output.run] if BASE.built else [])


def lineage_entries():
    """The provenance entries of every job the report depends on, gathered into results/lineage.json."""
    jobs = [rules.clean_text, rules.build_records, rules.split_jsonl, rules.convert_int4, rules.train_qlora]
    if BASE.built:
        jobs.append(rules.build_base_model)
    if config["training"]["train_lora"]:
        jobs.append(rules.train_lora)
    entries = [job.output.lineage for job in jobs] + [rules.compare_models.output.lineage]
    entries += expand("results/lineage/train_{name}.json", name=replicates())
    entries += expand("results/lineage/evaluate_{model}.json", model=evaluated_models() + replicates())
    return entries + expand("results/lineage/model_card_{adapter}.json", adapter=trained_adapters())
