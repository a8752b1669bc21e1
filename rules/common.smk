# Helpers shared by the rules.
import os
from pathlib import Path

from farense.imports import project_modules
from farense.profiles import resolve_training


def raw_files():
    """Every file under raw_dir, so that adding, editing or removing one reruns cleaning."""
    raw = Path(config["raw_dir"])
    if not raw.is_dir():
        return []  # clean_text then stops with a message naming raw_dir
    return sorted(str(p) for p in raw.rglob("*") if p.is_file())


def code_of(script):
    """The script and the project modules it imports, directly or through each other; as inputs, editing one
    reruns the job (Snakemake itself only tracks the script file)."""
    script = Path(workflow.basedir) / "scripts" / script
    paths = [str(script)] + project_modules(script)
    return [os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p for p in paths]


def jsonl_schema():
    return f"config/schemas/jsonl_{config['records']['format']}.schema.yaml"


def record_params():
    """The record options build_records uses (the JSONL rendering ones go to split_jsonl)."""
    rendering = ("format", "system_prompt", "continuation_prompt", "keep_conflicts")
    return {k: v for k, v in config["records"].items() if k not in rendering}


def base_model_input():
    """The tiny base is made by a rule; a real model is read from where the config says."""
    return rules.build_base_model.output.model if config["model"]["base"] == "tiny" else []


def training_params():
    """The effective training options: profile values, overridden by explicit config keys."""
    return resolve_training(config["training"], Path(workflow.basedir) / "config" / "profiles")


def unquantized_base():
    """The LoRA baseline trains on the fp16 base: the tiny one the pipeline built, or the real one."""
    return rules.build_base_model.output.model if config["model"]["base"] == "tiny" else []


def adapter_targets():
    """QLoRA always; the LoRA baseline unless training.train_lora is off."""
    return [rules.train_qlora.output.adapter] + ([rules.train_lora.output.adapter] if config["training"]["train_lora"] else [])


def evaluation_training_params():
    """The training settings the evaluation reuses (the loss is computed as training computes it);
    only these, so that a new learning rate does not re-evaluate the base model."""
    resolved = training_params()
    return {key: resolved[key] for key in ("batch_size", "max_seq_length", "mask_prompt", "compute")}


def evaluation_params():
    """The evaluation keys that change an evaluation (samples_in_report only changes the report)."""
    return {key: value for key, value in config["evaluation"].items() if key != "samples_in_report"}


def evaluated_models():
    """base and qlora always; lora when it is trained."""
    return ["base", "qlora"] + (["lora"] if config["training"]["train_lora"] else [])


def evaluation_inputs(wildcards):
    """The model an evaluation loads (and the adapter on it)."""
    if wildcards.model == "lora":
        model = unquantized_base()
        return {"model": model, "adapter": rules.train_lora.output.adapter} if model else {"adapter": rules.train_lora.output.adapter}
    inputs = {"model": rules.convert_int4.output.model}
    if wildcards.model == "qlora":
        inputs["adapter"] = rules.train_qlora.output.adapter
    return inputs


def evaluated_model(wildcards, input):
    """The base model's path: a folder the pipeline made, or the model named in the config."""
    return input.get("model") or config["model"]["base"]


def lineage_entries():
    """The provenance entries of every job the report depends on, gathered into results/lineage.json."""
    jobs = [rules.clean_text, rules.build_records, rules.split_jsonl, rules.convert_int4, rules.train_qlora]
    if config["model"]["base"] == "tiny":
        jobs.append(rules.build_base_model)
    if config["training"]["train_lora"]:
        jobs.append(rules.train_lora)
    entries = [job.output.lineage for job in jobs]
    return entries + expand("results/lineage/evaluate_{model}.json", model=evaluated_models())
