"""An adapter ready to leave the machine: its weights and config with its model card as README.md
(the Hugging Face convention), or fused into its base model with the card beside it. The card is
the model_card stage's output (results/cards/<adapter>.md); it is copied, never written here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .artifact_checks import check_adapter_dir, check_model_dir
from .errors import PipelineError
from .inference import resolve
from .textio import atomic_dir

ADAPTER_FILES = ("adapters.safetensors", "adapter_config.json", "training_summary.json", "metrics.csv")


def card_of(results: Path, adapter: str) -> Path:
    card = results / "cards" / f"{adapter}.md"
    if not card.exists():
        raise PipelineError(f"no model card for the {adapter} adapter in {card} yet: run `snakemake --cores 1 {card}`")
    return card


def export(results: Path, adapter: str, dest: Path, fuse: bool = False) -> Path:
    """Write `dest` whole or not at all: the adapter (or the fused model) and README.md, its card."""
    model_path, adapter_path = resolve(results, adapter, None)
    check_model_dir(model_path)  # a damaged file: one line naming it, before it is copied or fused
    check_adapter_dir(adapter_path)
    card = card_of(results, adapter)
    if dest.exists():
        raise PipelineError(f"{dest} exists already: choose a new folder")
    with atomic_dir(dest) as tmp:
        if fuse:
            # mlx-lm's own fuse writes the fused model; an int4 base is quantized again (see the README)
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlx_lm",
                    "fuse",
                    "--model",
                    model_path,
                    "--adapter-path",
                    adapter_path,
                    "--save-path",
                    str(tmp),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise PipelineError(f"mlx_lm fuse failed: {proc.stderr.strip()[-500:]}")
        else:
            for name in ADAPTER_FILES:
                if (Path(adapter_path) / name).exists():
                    shutil.copy2(Path(adapter_path) / name, tmp / name)
        shutil.copy2(card, tmp / "README.md")
    return dest
