"""Reading raw bytes as text, and writing outputs whole or not at all."""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield an empty folder beside `path` (a folder output); it replaces `path` only if the block
    succeeds, so a crash never leaves half a model or adapter in place."""
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed run
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


@contextmanager
def scratch_dir(directory: str | os.PathLike):
    """A temporary folder in `directory` (same disk as the output), removed whatever happens."""
    import shutil

    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".scratch.", dir=directory))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
