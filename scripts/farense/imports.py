"""The project modules a rule script imports, directly or through each other.

Snakemake reruns a job when its script changes, not when a module the script imports does;
the rules list these files as inputs so that an edit to any of them reruns the job.

This runs while Snakemake parses the workflow, for every command (a dry run, --lint): reading
every module's syntax tree for each of the 12 rule scripts took 1.2 s of a 2.2 s no-op dry run
(cProfile, 184 parses of about 45 files). Each file is now parsed once per process, and what it
imports is kept in `.snakemake/farense-imports.json` by path, size and modification time, so a
parse after the first reads no syntax tree unless a module changed.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

PACKAGE = "farense"
CACHE = Path(".snakemake") / "farense-imports.json"  # relative: the folder Snakemake runs in

_memo: dict[str, tuple[list, list[str]]] = {}  # path -> (stamp, imported module names)
_loaded = False
_dirty = False


def _stamp(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _load_cache() -> None:
    global _loaded
    _loaded = True
    try:
        _memo.update({k: (v[0], v[1]) for k, v in json.loads(CACHE.read_text(encoding="utf-8")).items()})
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        pass  # no cache yet, or a damaged one: parse again


def _save_cache() -> None:
    global _dirty
    if not _dirty or not CACHE.parent.is_dir():
        return
    tmp = CACHE.with_name(f"{CACHE.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({k: list(v) for k, v in sorted(_memo.items())}), encoding="utf-8")
        os.replace(tmp, CACHE)  # two Snakemakes at once: the last whole file wins
        _dirty = False
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only folder: parse again next time


def _names(path: Path, in_package: bool) -> list[str]:
    """The farense modules `path` names in its imports (a module, or a module's attribute)."""
    names = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and in_package:  # from .x import y
                names += [node.module] if node.module else [a.name for a in node.names]
            elif node.module == PACKAGE:  # from farense import x
                names += [a.name for a in node.names]
            elif node.module and node.module.startswith(PACKAGE + "."):  # from farense.x import y
                names.append(node.module.split(".", 1)[1])
        elif isinstance(node, ast.Import):
            names += [a.name.split(".", 1)[1] for a in node.names if a.name.startswith(PACKAGE + ".")]
    return sorted({name.split(".")[0] for name in names})


def _imported(path: Path, package_dir: Path) -> set[Path]:
    global _dirty
    if not _loaded:
        _load_cache()
    key = f"{path.resolve()}|{int(path.parent == package_dir)}"
    stamp = _stamp(path)
    cached = _memo.get(key)
    if cached is None or list(cached[0]) != stamp:
        cached = (stamp, _names(path, path.parent == package_dir))
        _memo[key] = cached
        _dirty = True
    return {package_dir / f"{name}.py" for name in cached[1] if (package_dir / f"{name}.py").exists()}


def project_modules(script: str | Path) -> list[str]:
    """Paths of the package modules `script` depends on (recursively), plus the package's __init__."""
    script = Path(script)
    package_dir = script.parent / PACKAGE
    seen: set[Path] = {package_dir / "__init__.py"}
    todo = [script]
    while todo:
        for module in _imported(todo.pop(), package_dir):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    _save_cache()
    return sorted(str(p) for p in seen)
