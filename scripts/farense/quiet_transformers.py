"""Imported first by the command-line tools: transformers' start-up notes (which it prints when it
is imported) kept off their output, which a backend may parse (--json)."""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
