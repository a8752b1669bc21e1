"""What must happen before mlx is imported, done by importing this module first:

    from farense.preload import blas  # first: the BLAS before mlx

It loads an optimised BLAS (farense.fastblas), which only takes effect when loaded before mlx,
and on an NVIDIA GPU points MLX at the run's shared kernel cache (farense.kernel_cache), which
only takes effect before MLX compiles its first kernel.
As an import with a side effect, rather than a call among the imports, the script's other imports
need no exception to "imports at the top" (the rule and command-line scripts carried 42 `# noqa: E402` before).
"""

from __future__ import annotations

from .fastblas import use_fast_blas
from .kernel_cache import use_shared_cache

blas = use_fast_blas()  # the library in use, for the run record and the log
# before the first GPU kernel: MLX reads its kernel cache folder once, when it first compiles one
kernel_shelf = use_shared_cache()
