"""Export a trained adapter with its model card, or fuse it into its base model.

    python scripts/cli/export_adapter.py DEST                  # results/adapters/qlora + README.md (its card)
    python scripts/cli/export_adapter.py DEST --adapter lora
    python scripts/cli/export_adapter.py DEST --fuse           # the base with the adapter fused in, + README.md

DEST must not exist; it is written whole or not at all. The card (results/cards/<adapter>.md,
made by the model_card stage) carries the adapter's measured figures, its recipe and the sha256
of the data and base it was made from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _farense_path  # noqa: F401 (first: puts scripts/ on sys.path for the farense package)
import farense.quiet_transformers  # noqa: F401 (next: before transformers is imported)
from farense.errors import PipelineError
from farense.export import export


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="a new folder")
    parser.add_argument("--adapter", choices=["qlora", "lora"], default="qlora")
    parser.add_argument("--fuse", action="store_true", help="fuse the adapter into its base (mlx_lm fuse)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        out = export(args.results, args.adapter, args.dest, args.fuse)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{out}: {'fused model' if args.fuse else 'adapter'} with its model card (README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
