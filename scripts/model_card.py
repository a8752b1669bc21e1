"""Rule script for model_card: an adapter, its evaluation and the comparison -> results/cards/{adapter}.md."""

import json
from pathlib import Path

from farense.provenance import describe
from farense.model_card import card
from farense.runlog import stage
from farense.textio import write_text_atomic

smk = snakemake  # noqa: F821 (injected by Snakemake)


def load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


with stage(smk) as log:
    adapter = Path(smk.input.adapter)
    # the data, and the model folder the adapter was trained on (the int4 one for QLoRA)
    made_from = [smk.input.train, smk.input.valid, smk.input.test, smk.params.model]
    hashes = {str(path): describe(path)["sha256"] for path in made_from if Path(path).exists()}
    info = Path(smk.input.base) / "farense_base.json" if smk.input.get("base") else None
    base = load(info) if info and info.exists() else {}  # the base the pipeline made: tiny, or a GGUF import
    if base.get("gguf_sha256"):
        hashes[f"{base['gguf']} (the GGUF file the base was imported from)"] = base["gguf_sha256"]
    base_model = base.get("gguf") or smk.params.base_name
    text = card(
        smk.wildcards.adapter,
        base_model,
        load(smk.input.evaluation),
        load(smk.input.comparison),
        load(adapter / "training_summary.json"),
        load(adapter / "adapter_config.json"),
        hashes,
    )
    write_text_atomic(smk.output.card, text)
    log.info("wrote %s", smk.output.card)
