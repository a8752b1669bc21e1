"""Reading raw bytes as text, and writing outputs whole or not at all (and, after a kill, finding
what a write left behind)."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .diskspace import writing

# Tried in order after the BOM check. cp1252 before latin-1: the two only differ in
# 0x80-0x9F, where cp1252 holds the curly quotes and dashes Portuguese text uses,
# while latin-1 holds C1 control characters that no real text contains.
FALLBACK_ENCODINGS = ("utf-8", "cp1252", "latin-1")

BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class UndecodableError(ValueError):
    """Raised for bytes that are not text in any encoding we accept."""


def looks_binary(data: bytes) -> bool:
    """True for content that is not text: NUL bytes in the first 8 KiB (without a UTF-16 BOM)."""
    head = data[:8192]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return b"\x00" in head


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode raw bytes; return (text, encoding name).

    A BOM decides when present; otherwise the first of FALLBACK_ENCODINGS that
    decodes strictly. cp1252 leaves five bytes undefined, so a file using one of
    them falls through to latin-1, which accepts every byte.
    """
    for bom, name in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(name), name
            except UnicodeDecodeError as err:
                raise UndecodableError(f"has a {name} byte order mark but is not valid {name}: {err}") from err
    for name in FALLBACK_ENCODINGS:
        try:
            return data.decode(name), name
        except UnicodeDecodeError:
            continue
    raise UndecodableError("not decodable")  # unreachable: latin-1 decodes any byte


# corpus.parquet and records.parquet are read once or twice by the next stage: LZ4 writes and
# reads several times faster than zstd, for files about 1.6 times larger.
INTERMEDIATE_COMPRESSION = "lz4"


def open_parquet(path: str | os.PathLike):
    """A Parquet file to read in batches or row groups. Without pre-buffering: with it, pyarrow
    reads ahead over the whole file (measured: 173 MB of buffers to iterate a 300 MB corpus in
    8 MB row groups, 30 MB without), so memory grew with the corpus."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, pre_buffer=False)


def parquet_column_bytes(path, column: str) -> int:
    """Uncompressed size of one column of a Parquet file, from its metadata (nothing is read)."""
    meta = open_parquet(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    index = names.index(column)
    return sum(meta.row_group(g).column(index).total_uncompressed_size for g in range(meta.num_row_groups))


def _read_umask() -> int:
    """The process's umask (read by setting it, so once, at import, before any thread starts)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside `path` (named `.<name>.*.tmp`); move it into place only if
    the block succeeds. A full disk becomes a DiskFullError naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        with writing(path):
            yield Path(tmp)
            # mkstemp makes the file private (0600); an output gets the mode open() would give it
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, create: bool = True):
    """Yield an empty folder beside `path` (a folder output, named `<name>.tmp`); it replaces
    `path` only if the block succeeds, so a crash never leaves half a model or adapter in place.
    create=False yields the name only, for a writer that insists on making the folder itself
    (mlx-lm's convert). A full disk becomes a DiskFullError naming `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed run
    try:
        with writing(path):
            if create:
                tmp.mkdir(parents=True)
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


@contextmanager
def scratch_dir(directory: str | os.PathLike, owner: str):
    """A temporary folder in `directory` (same disk as the output), removed whatever happens;
    named `.<owner>.scratch.*` after the output it serves, so that the job making that output
    can find it after a crash (remove_leftovers)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{owner}.scratch.", dir=directory))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def leftovers(path: str | os.PathLike) -> list[Path]:
    """What a killed job left beside its output `path`: `.<name>.*` (atomic_path's temporary
    files, scratch folders) and `<name>.tmp*` (atomic_dir's folder)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(f".{path.name}.") or p.name == f"{path.name}.tmp" or p.name.startswith(f"{path.name}.tmp.")
    )


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what a killed job left beside its output `path` (SIGKILL runs no cleanup); only
    the job that makes `path` may call this, before it writes. Returns what was removed."""
    found = leftovers(path)
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return found


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
