"""Damaged artifacts caught before a library reads them: a truncated or garbled safetensors file,
a model folder without config.json or weights, an adapter folder without its files, a JSON file
that does not parse. Each gives one PipelineError that names the file (runlog.stage makes it one
line and exit status 1), where MLX says "[load_safetensors] Tensor 'a' invalid data offsets
(40, 40040) exceeding the size of the file" without naming the file, "[read] Unable to read 8
bytes from file" for an empty one, and mlx-lm a traceback.

Only the structure is checked: a safetensors file's header and the sizes it promises (one read
of the header, whatever the size of the weights). A byte changed inside the tensor data is not
seen here; `python scripts/cli/lineage.py verify` compares every artifact with the sha256 recorded
when it was made.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import PipelineError

# Bytes per element of the safetensors dtypes (the format's own list, safetensors/src/tensor.rs).
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "C64": 8,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# The safetensors format refuses headers over 100 MB (MAX_HEADER_SIZE in safetensors' Rust code):
# a larger length field is a garbled first 8 bytes, not a header.
MAX_HEADER_BYTES = 100_000_000


def read_json(path: str | Path, what: str = "JSON file") -> object:
    """A JSON file's content, or one line naming the file: missing, not UTF-8, not JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing ({what})") from None
    except UnicodeDecodeError as err:
        raise PipelineError(
            f"{path}: damaged {what}: not UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start})"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        reason = "empty" if not text.strip() else f"not JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        raise PipelineError(f"{path}: damaged {what}: {reason}") from None


def _damaged(path: Path, reason: str) -> PipelineError:
    return PipelineError(f"{path}: damaged safetensors file: {reason}")


def check_safetensors(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file whose header parses and whose
    tensors all lie inside the file; else a PipelineError naming the file and what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            length_field = handle.read(8)
            if len(length_field) < 8:
                raise _damaged(path, f"truncated: {size} byte(s), fewer than the 8 that give its header's length")
            header_bytes = int.from_bytes(length_field, "little")
            if header_bytes > MAX_HEADER_BYTES:
                raise _damaged(
                    path, f"its first 8 bytes give a header of {header_bytes:,} bytes (at most {MAX_HEADER_BYTES:,})"
                )
            if 8 + header_bytes > size:
                raise _damaged(path, f"truncated: its header needs {8 + header_bytes:,} bytes, the file has {size:,}")
            raw = handle.read(header_bytes)
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(path, f"its header is not JSON ({type(err).__name__}: {err})") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    tensors, end = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, stop) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
            begin, stop = int(begin), int(stop)
        except (TypeError, KeyError, ValueError):
            raise _damaged(path, f"its header's entry for tensor {name!r} lacks dtype, shape or data offsets") from None
        expected = math.prod(shape) * DTYPE_BYTES[dtype] if dtype in DTYPE_BYTES else None
        if begin < 0 or stop < begin or (expected is not None and stop - begin != expected):
            raise _damaged(path, f"tensor {name!r} ({dtype} {list(shape)}) has data offsets {begin}-{stop}")
        tensors[name] = (dtype, shape)
        end = max(end, stop)
    if 8 + header_bytes + end > size:
        raise _damaged(path, f"truncated: its tensors need {8 + header_bytes + end:,} bytes, the file has {size:,}")
    return tensors


def check_model_dir(path: str | Path) -> None:
    """A local model folder as mlx-lm loads it: config.json (a JSON object), its weights
    (model*.safetensors, each whole), and every file the weight index names. A name that is no
    folder here (a Hugging Face id) is left to mlx-lm."""
    path = Path(path)
    if not path.is_dir():
        return
    config = path / "config.json"
    if not config.is_file():
        raise PipelineError(f"{path}: model folder without config.json")
    if not isinstance(read_json(config, "model configuration"), dict):
        raise PipelineError(f"{config}: damaged model configuration: not a JSON object")
    weights = sorted(path.glob("model*.safetensors"))  # the files mlx-lm's load_model reads
    if not weights:
        raise PipelineError(f"{path}: model folder without weights (no model*.safetensors)")
    index = path / "model.safetensors.index.json"
    if index.exists():
        listed = read_json(index, "weight index")
        files = set((listed.get("weight_map") or {}).values()) if isinstance(listed, dict) else set()
        for name in sorted(files):
            if not (path / name).is_file():
                raise PipelineError(f"{index}: names {name}, which is missing")
    for weight_file in weights:
        check_safetensors(weight_file)


def check_adapter_dir(path: str | Path) -> dict:
    """An adapter folder as mlx-lm loads it: adapter_config.json and adapters.safetensors, whole.
    Returns the adapter's configuration."""
    path = Path(path)
    if not path.is_dir():
        raise PipelineError(f"{path}: no such adapter folder")
    config = read_json(path / "adapter_config.json", "adapter configuration")
    if not isinstance(config, dict):
        raise PipelineError(f"{path / 'adapter_config.json'}: damaged adapter configuration: not a JSON object")
    check_safetensors(path / "adapters.safetensors")
    return config


def load_model(model_path: str, adapter_path: str | None = None):
    """mlx_lm.load after the checks above; what mlx-lm still refuses (a tensor of the wrong shape
    or name) is one line naming the folders."""
    check_model_dir(model_path)
    if adapter_path is not None:
        check_adapter_dir(adapter_path)
    import mlx_lm

    try:
        return mlx_lm.load(model_path, adapter_path=adapter_path)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        what = f"{model_path}" + (f" with the adapter {adapter_path}" if adapter_path else "")
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise PipelineError(f"{what}: mlx-lm cannot load it ({reason[:300]})") from err
