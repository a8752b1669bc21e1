"""The project modules a rule script imports, directly or through each other.

Snakemake reruns a job when its script changes, not when a module the script imports does;
the rules list these files as inputs so that an edit to any of them reruns the job.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "farense"


def _imported(path: Path, package_dir: Path) -> set[Path]:
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and path.parent == package_dir:  # from .x import y
                names = [node.module] if node.module else [a.name for a in node.names]
            elif node.module == PACKAGE:  # from farense import x
                names = [a.name for a in node.names]
            elif node.module and node.module.startswith(PACKAGE + "."):  # from farense.x import y
                names = [node.module.split(".", 1)[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith(PACKAGE + ".")]
        for name in names:
            module = package_dir / f"{name.split('.')[0]}.py"
            if module.exists():
                found.add(module)
    return found


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
    return sorted(str(p) for p in seen)
