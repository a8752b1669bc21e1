"""Serve the trained Farense model over HTTP on loopback: mlx-lm's OpenAI-compatible server
(every option of `mlx_lm.server`) with bounds for a backend under load (farense.serving): a
listen backlog for bursts, at most 64 requests at once (503 beyond), request and prompt size
caps (413), prompts checked against the model's context (400), socket timeouts.

    python scripts/cli/serve_qlora.py --port 8080                 # the int4 base with the QLoRA adapter
    python scripts/cli/serve_qlora.py --adapter lora --port 8080  # the LoRA adapter on its base
    python scripts/cli/serve_qlora.py --model DIR --port 8080     # any model folder (mlx_lm.server's options)
"""

import _farense_path  # noqa: F401 (first: puts scripts/ on sys.path for the farense package)
import farense.quiet_transformers  # noqa: F401 (next: before transformers is imported)
from farense.preload import blas  # noqa: F401 (loads the BLAS before mlx is imported)
from farense.serving import main

if __name__ == "__main__":
    main()
