"""Puts scripts/ (the folder of the `farense` package) on sys.path for the command-line tools.

Python puts a script's own folder on sys.path, which for a tool here is scripts/cli/, not scripts/;
each tool imports this module first, on a line of its own, before any `farense` import:

    import _farense_path  # noqa: F401 (first: puts scripts/ on sys.path for the farense package)

so that `python scripts/cli/cli/<tool>.py ...` runs from the project root or from any other folder.
"""

import sys
from pathlib import Path

SCRIPTS = str(Path(__file__).resolve().parents[1])
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
