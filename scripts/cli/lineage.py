"""Audit the lineage of the pipeline's artifacts.

    python scripts/cli/lineage.py verify             # exit 0 when every hash and link holds
    python scripts/cli/lineage.py show results/adapters/qlora [--code]
    python scripts/cli/lineage.py show results/data/train.jsonl --json

Reads the provenance entries the jobs wrote (results/lineage/*.json). `verify` recomputes the
sha256 of every recorded artifact and input, and names each artifact that was changed or
removed, or made from inputs that have changed since (directly or further up the chain).
"""

from __future__ import annotations

import argparse
import json
import sys

import _farense_path  # noqa: F401 (first: puts scripts/ on sys.path for the farense package)
from farense.provenance import ancestry, find_artifact, load_store, producers, verify


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", default="results/lineage", help="folder of provenance entries (default: results/lineage)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="recompute hashes and check the chain")
    check.add_argument("--json", action="store_true", help="print the problems as one JSON object")
    show = sub.add_parser("show", help="an artifact's ancestry, down to the source files")
    show.add_argument("path")
    show.add_argument("--code", action="store_true", help="list the code files of each job")
    show.add_argument("--json", action="store_true", help="print the entry of the job that made it")
    args = parser.parse_args(argv)

    entries = load_store(args.store)
    if not entries:
        print(
            f"no provenance entries in {args.store}: run `snakemake --cores 1 results/report.html` first",
            file=sys.stderr,
        )
        return 2
    if args.command == "verify":
        problems = verify(entries)
        artifacts = {o["path"] for e in entries for o in e["outputs"]}
        if args.json:
            print(
                json.dumps(
                    {"ok": not problems, "artifacts": len(artifacts), "jobs": len(entries), "problems": problems},
                    indent=2,
                )
            )
        elif problems:
            for p in problems:
                print(f"{p['path']}: {p['problem']}")
            print(f"{len(problems)} of {len(artifacts)} artifacts fail the check", file=sys.stderr)
        else:
            print(
                f"ok: {len(artifacts)} artifacts from {len(entries)} jobs; every hash and every link of the chain holds"
            )
        return 1 if problems else 0
    path = find_artifact(entries, args.path)
    if path is None:
        print(f"{args.path}: not an artifact the lineage records", file=sys.stderr)
        return 2
    if args.json:
        entry = producers(entries).get(path)
        print(json.dumps(entry if entry else {"path": path, "made_by": None}, indent=2, ensure_ascii=False))
    else:
        print("\n".join(ancestry(entries, path, show_code=args.code)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
