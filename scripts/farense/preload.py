"""What must happen before mlx is imported, done by importing this module first:

    from farense.preload import blas  # first: the BLAS before mlx

It loads an optimised BLAS (farense.fastblas), which only takes effect when loaded before mlx.
As an import with a side effect, rather than a call among the imports, the script's other imports
need no exception to "imports at the top" (the rule and command-line scripts carried 42 `# noqa: E402` before).
"""

from __future__ import annotations

from .fastblas import use_fast_blas

blas = use_fast_blas()  # the library in use, for the run record and the log
