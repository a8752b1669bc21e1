"""Rules list the project modules their scripts import, found by reading the imports."""

from conftest import ROOT
from farense.imports import project_modules


def test_imports_are_followed_through_modules(tmp_path):
    package = tmp_path / "scripts" / "farense"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\nimport os\n")
    (package / "b.py").write_text("from . import c\nthing = 1\n")
    (package / "c.py").write_text("")
    (package / "unused.py").write_text("")
    script = tmp_path / "scripts" / "run.py"
    script.write_text("import json\nfrom farense.a import thing\n")
    assert [p.split("/")[-1] for p in project_modules(script)] == ["__init__.py", "a.py", "b.py", "c.py"]


def test_clean_text_depends_on_every_module_it_runs():
    names = {p.split("/")[-1][:-3] for p in project_modules(ROOT / "scripts/clean_text.py")}
    assert {"corpus", "cleaning", "markup", "mojibake", "dedup", "paragraph_dedup", "options", "textio"} <= names
    assert "training" not in names
