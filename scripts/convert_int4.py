"""Rule script for convert_int4: the base model quantized by mlx-lm's own conversion."""

from farense.preload import blas  # noqa: F401 (first: loads the BLAS before mlx is imported)

from pathlib import Path

from mlx_lm import convert
from mlx_lm.utils import hf_repo_to_path

from farense.artifact_checks import check_model_dir, load_model
from farense.model_files import describe
from farense.runlog import stage
from farense.chat_templates import ensure_folder_chat_template
from farense.textio import atomic_dir, write_json_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)
with stage(smk) as log:
    base, out = smk.params.base, Path(smk.output.model)
    check_model_dir(base)  # a damaged base: one line naming the file, before mlx-lm reads it
    log.info("converting %s to %d bits, group size %d", base, smk.params.bits, smk.params.group_size)
    # whole or not at all; a full disk is named after the output (mlx-lm makes the folder itself)
    with atomic_dir(out, create=False) as tmp:
        convert(base, mlx_path=str(tmp), quantize=True, q_bits=smk.params.bits, q_group_size=smk.params.group_size)
        # Base models such as Mistral-7B-v0.1 ship no chat template; the chat data needs one: its family's.
        ensure_folder_chat_template(tmp, log)
    # A hub id was downloaded into the local cache by the conversion: measure that copy.
    base_dir = Path(base) if Path(base).exists() else hf_repo_to_path(base)
    base_model, _ = load_model(str(base_dir))
    int4_model, _ = load_model(str(out))
    summary = {
        "base": describe(base_dir, base_model),
        "int4": describe(out, int4_model),
        "bits": smk.params.bits,
        "group_size": smk.params.group_size,
    }
    if "snapshots" in base_dir.parts:  # a hub id: the commit the cache resolved it to, not only the name
        summary["base"]["revision"] = base_dir.name
    summary["compression"] = round(summary["base"]["weights_bytes"] / summary["int4"]["weights_bytes"], 2)
    write_json_atomic(smk.output.summary, summary)
    log.info(
        "fp16 %s bytes -> int4 %s bytes, %.2f bits per weight",
        summary["base"]["weights_bytes"],
        summary["int4"]["weights_bytes"],
        summary["int4"]["bits_per_weight"],
    )
