"""Provenance of the pipeline's artifacts (what `scripts/cli/lineage.py` and the lineage rule use): the
entries, the graph they form, and their audit.

Every rule writes one entry (results/lineage/<job>.json) after its outputs are complete: each
output with its sha256 (a directory: the sha256 of its files' relative names and hashes), each
input with the sha256 it had when it was read, the params, the code that ran (the rule's script
and the project modules it imports: inputs whose role is "code"), package versions, times and
platform. `verify` recomputes every hash and checks the chain: an input's recorded hash must be
the hash its producer recorded for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "mlx",
    "mlx-lm",
    "snakemake",
    "pandas",
    "pyarrow",
    "jsonschema",
    "numpy",
    "ftfy",
    "transformers",
    "tokenizers",
)
STORE = Path("results/lineage")
CHUNK = 1 << 20
# Snakemake drops this marker into directory outputs after the job: not part of the artifact.
IGNORED_NAMES = frozenset({".snakemake_timestamp"})


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path: str | os.PathLike) -> dict:
    """Kind, sha256 and size of a file or directory; a directory's hash covers its files' relative
    names and contents (not their times), so a copy hashes the same."""
    path = Path(path)
    if path.is_file():
        return {"kind": "file", "sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.is_dir():
        digest, size, count = hashlib.sha256(), 0, 0
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES):
            rel = file.relative_to(path).as_posix()
            digest.update(f"{rel}\0{sha256_file(file)}\n".encode())
            size += file.stat().st_size
            count += 1
        return {"kind": "dir", "sha256": digest.hexdigest(), "bytes": size, "files": count}
    raise FileNotFoundError(path)


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


# What Slurm tells a job about itself (sbatch/srun set these): the job id, and where it ran.
SLURM_VARIABLES = {"job_id": "SLURM_JOB_ID", "node": "SLURMD_NODENAME", "partition": "SLURM_JOB_PARTITION"}


def slurm_job(environ=os.environ) -> dict | None:
    """The Slurm job this process runs in (None outside one): a job's entry then names the
    scheduler's record of it (`sacct -j <job_id>`)."""
    if not environ.get("SLURM_JOB_ID"):
        return None
    return {key: environ[name] for key, name in SLURM_VARIABLES.items() if environ.get(name)}


def json_safe(value):
    """Params as JSON: mappings and sequences kept, anything else as its text."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _norm(path) -> str:
    return os.path.normpath(str(path))


def make_entry(
    job: str,
    rule: str,
    wildcards: dict,
    inputs: dict[str, list[str]],
    outputs: dict[str, str],
    params: dict,
    started: datetime,
    ended: datetime,
    code_prefix: str = "scripts/",
) -> dict:
    """One provenance entry. `inputs` maps an input name to its paths; files under `code_prefix` are code.
    A job run by Slurm also records its Slurm job (`slurm`: job_id, node, partition)."""
    recorded_inputs = []
    for name, paths in inputs.items():
        for p in paths:
            if not Path(p).exists():
                continue
            if _norm(p).startswith(str(STORE) + os.sep):
                role = "lineage"  # another job's provenance entry (gathered into the graph)
            elif _norm(p).startswith(code_prefix.rstrip("/") + os.sep) or name == "code":
                role = "code"
            else:
                role = "data"
            recorded_inputs.append({"path": _norm(p), "name": name, "role": role, **describe(p)})
    entry = {
        "job": job,
        "rule": rule,
        "wildcards": dict(wildcards),
        "outputs": [{"path": _norm(p), "name": name, **describe(p)} for name, p in outputs.items()],
        "inputs": recorded_inputs,
        "params": json_safe(params),
        "versions": versions(),
        "started": started.isoformat(timespec="seconds"),
        "ended": ended.isoformat(timespec="seconds"),
        "seconds": round((ended - started).total_seconds(), 3),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "python": sys.version.split()[0]},
    }
    slurm = slurm_job()
    if slurm:
        entry["slurm"] = slurm
    return entry


def now() -> datetime:
    return datetime.now(timezone.utc)


def load_entries(paths) -> list[dict]:
    """Provenance entries from their files (each remembers its file as `entry_file`)."""
    entries = []
    for path in paths:
        entry = json.loads(Path(path).read_text(encoding="utf-8"))
        entry["entry_file"] = _norm(path)
        entries.append(entry)
    return entries


def load_store(store: str | os.PathLike = STORE) -> list[dict]:
    return load_entries(sorted(Path(store).glob("*.json")))


def producers(entries: list[dict]) -> dict[str, dict]:
    """Artifact path -> the entry of the job that made it (an entry's own file is made by its job too)."""
    made = {}
    for entry in entries:
        for out in entry["outputs"]:
            made[out["path"]] = entry
    return made


def graph(entries: list[dict]) -> dict:
    """Artifacts (nodes) and derivations (edges), for results/lineage.json and the report."""
    made = producers(entries)
    artifacts, edges = {}, []
    for entry in entries:
        for out in entry["outputs"]:
            artifacts[out["path"]] = {
                "kind": out["kind"],
                "sha256": out["sha256"],
                "bytes": out["bytes"],
                "made_by": entry["job"],
                "rule": entry["rule"],
                "ended": entry["ended"],
            }
        for inp in entry["inputs"]:
            if inp["path"] not in made:
                role = {"data": "source"}.get(inp["role"], inp["role"])
                artifacts.setdefault(
                    inp["path"],
                    {
                        "kind": inp["kind"],
                        "sha256": inp["sha256"],
                        "bytes": inp["bytes"],
                        "made_by": None,
                        "role": role,
                    },
                )
            for out in entry["outputs"]:
                edges.append({"from": inp["path"], "to": out["path"], "job": entry["job"], "role": inp["role"]})
    jobs = {
        e["job"]: {
            k: e[k]
            for k in ("rule", "wildcards", "params", "versions", "started", "ended", "seconds", "platform", "slurm")
            if k in e
        }
        for e in entries
    }
    return {"artifacts": artifacts, "edges": edges, "jobs": jobs}


def verify(entries: list[dict]) -> list[dict]:
    """Problems found: every artifact changed or removed since it was made, every artifact made
    from inputs that have changed since (or from another version than its producer recorded), and
    everything made from those. An empty list: every hash and link of the chain holds."""
    made = producers(entries)
    current: dict[str, str | None] = {}

    def now_hash(path: str) -> str | None:
        if path not in current:
            current[path] = describe(path)["sha256"] if Path(path).exists() else None
        return current[path]

    problems: dict[str, str] = {}
    for entry in entries:
        for out in entry["outputs"]:
            actual = now_hash(out["path"])
            if actual is None:
                problems[out["path"]] = "removed"
            elif actual != out["sha256"]:
                problems[out["path"]] = (
                    f"changed since {entry['job']} made it (sha256 recorded {out['sha256'][:12]}, now {actual[:12]})"
                )
    for entry in entries:
        for inp in entry["inputs"]:
            producer = made.get(inp["path"])
            reasons = []
            if producer is not None:
                recorded = next(o["sha256"] for o in producer["outputs"] if o["path"] == inp["path"])
                if recorded != inp["sha256"]:
                    reasons.append(f"made from another version of {inp['path']} than {producer['job']} recorded")
            if inp["path"] not in problems and now_hash(inp["path"]) != inp["sha256"]:
                reasons.append(
                    f"made from {inp['path']}, which has {'gone' if now_hash(inp['path']) is None else 'changed'} since"
                )
            for out in entry["outputs"]:
                if reasons and out["path"] not in problems:
                    problems[out["path"]] = "; ".join(reasons)
    # Whatever was made from a problem artifact inherits it.
    changed = True
    while changed:
        changed = False
        for entry in entries:
            bad = [i["path"] for i in entry["inputs"] if i["path"] in problems]
            for out in entry["outputs"]:
                if bad and out["path"] not in problems:
                    problems[out["path"]] = f"made from {bad[0]}, which is not the file that was recorded"
                    changed = True
    return [{"path": p, "problem": why} for p, why in sorted(problems.items())]


def find_artifact(entries: list[dict], path: str) -> str | None:
    """The recorded artifact that is `path` or contains it (a file inside an output directory)."""
    wanted = _norm(path)
    paths = {o["path"] for e in entries for o in e["outputs"]} | {i["path"] for e in entries for i in e["inputs"]}
    if wanted in paths:
        return wanted
    parents = [p for p in paths if wanted.startswith(p + os.sep)]
    return max(parents, key=len) if parents else None


def ancestry(entries: list[dict], path: str, show_code: bool = False) -> list[str]:
    """The artifact's ancestry as tree lines, down to the source files (code shown as a count
    unless show_code); a subtree already printed is referred to, not repeated."""
    made = producers(entries)
    printed: set[str] = set()
    lines: list[str] = []

    def label(p: str, info: dict | None) -> str:
        entry = made.get(p)
        size = f"{info['bytes']:,} bytes".replace(",", " ") if info else ""
        digest = f"sha256 {info['sha256'][:12]}" if info else ""
        if entry is None:
            return f"{p}  [{digest}, {size}, source]"
        return f"{p}  [{digest}, {size}]  made by {entry['job']} at {entry['ended']} ({entry['seconds']} s)"

    def walk(p: str, info: dict | None, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        entry = made.get(p)
        seen = p in printed and entry is not None
        lines.append(prefix + branch + label(p, info) + ("  (ancestry above)" if seen else ""))
        if entry is None or seen:
            return
        printed.add(p)
        child_prefix = prefix + ("" if top else ("    " if last else "│   "))
        data = [i for i in entry["inputs"] if i["role"] == "data"]
        code = [i for i in entry["inputs"] if i["role"] == "code"]
        items = [(i["path"], i) for i in data]
        if code and not show_code:
            items.append(
                (
                    f"code: {len(code)} files ({', '.join(Path(i['path']).name for i in code[:4])}{', ...' if len(code) > 4 else ''})",
                    None,
                )
            )
        elif code:
            items += [(i["path"], i) for i in code]
        for n, (child, child_info) in enumerate(items):
            is_last = n == len(items) - 1
            if child_info is None:
                lines.append(child_prefix + ("└── " if is_last else "├── ") + child)
            else:
                walk(child, child_info, child_prefix, is_last, False)

    entry = made.get(path)
    info = next((o for o in entry["outputs"] if o["path"] == path), None) if entry else None
    walk(path, info, "", True, True)
    return lines


def write_graph(entries: list[dict], path: str | os.PathLike) -> dict:
    from .textio import write_json_atomic

    data = graph(entries)
    write_json_atomic(path, data)
    return data
