"""A full disk: recognised in whatever error a writer raises, and turned into one line that names
the file that could not be written and the filesystem that is full."""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import PipelineError

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Writers that keep the errno in the text only: pyarrow ("[errno 28] No space left on device"),
# Rust's tokenizers and safetensors ("No space left on device (os error 28)").
NO_SPACE_TEXT = re.compile(r"no space left on device|disk quota exceeded|(os error|errno) (28|122)\b", re.IGNORECASE)
# MLX's writers (mx.save_safetensors, and mlx-lm's save_model through it) give no reason at all:
# "[write] Unable to write 2097248 bytes to file." The disk was full if less than that was free.
MLX_SHORT_WRITE = re.compile(r"Unable to write (\d+) bytes")


class DiskFullError(PipelineError):
    """No space was left where an output was being written; nothing was left in its place."""


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the filesystem that holds `path` (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def mount_point(path: str | os.PathLike) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def out_of_space(err: BaseException, path: str | os.PathLike) -> bool:
    """Whether `err`, raised while writing `path`, comes from a full filesystem. Call it before
    the partial file is removed: MLX's error is judged by the free space left at that moment."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
            return True
        text = str(e)
        if NO_SPACE_TEXT.search(text):
            return True
        short = MLX_SHORT_WRITE.search(text)
        if short:
            free = free_bytes(path)
            return free is not None and free < int(short.group(1))
    return False


def _size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def full_disk_message(path: str | os.PathLike, what: str | None = None) -> str:
    mount = mount_point(path)
    try:
        total = shutil.disk_usage(mount).total
    except OSError:
        total = None
    return (
        f"no space left on the device while writing {what or os.path.normpath(path)} (filesystem {mount}: "
        f"{_size(total)}, {_size(free_bytes(path))} free): nothing was left in its place; "
        "free some space there and run the same command again"
    )


@contextmanager
def writing(path: str | os.PathLike):
    """Turn a full disk met inside the block into a DiskFullError naming `path`; other errors pass."""
    try:
        yield
    except DiskFullError:
        raise
    except BaseException as err:
        if out_of_space(err, path):
            raise DiskFullError(full_disk_message(path)) from err
        raise
