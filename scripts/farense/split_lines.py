"""The lines of the split files (results/data/{train,valid,test}.jsonl), checked against the
JSONL schema (config/schemas/jsonl_<format>.schema.yaml) when split_jsonl writes them and again
when training, evaluation and the tiny base read them back: a line edited by hand into something
mlx-lm cannot read (broken JSON, a missing field, an empty answer, bytes that are not UTF-8)
stops the job with one line naming the file, the line and the field, where mlx-lm's reader gave
a JSONDecodeError traceback with neither file nor line (or, for a key missing after the first
line, a KeyError deep in tokenization)."""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import fastjsonschema
import jsonschema
import yaml

from .errors import PipelineError

log = logging.getLogger(__name__)


class LineValidator:
    """Validates JSONL objects against a JSON Schema file.

    fastjsonschema (the schema compiled to Python) checks every line quickly; a line it
    rejects is checked again with jsonschema, whose messages name the failing field.
    """

    def __init__(self, schema_path: str | os.PathLike):
        with open(schema_path, encoding="utf-8") as handle:
            schema = yaml.safe_load(handle)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        self.schema_path = str(schema_path)
        self._explain = cls(schema)
        # Our schemas use only keywords that draft-07 shares with 2020-12.
        self._fast = fastjsonschema.compile({k: v for k, v in schema.items() if k != "$schema"})

    def validate(self, obj: dict, where: str) -> None:
        """Raises a PipelineError that starts with `where` and names the failing field."""
        try:
            self._fast(obj)
            return
        except fastjsonschema.JsonSchemaException as fast_error:
            error = jsonschema.exceptions.best_match(self._explain.iter_errors(obj))
            if error is None:  # the two validators disagree: trust the slower, reference one
                log.warning("%s: fastjsonschema rejected a line jsonschema accepts (%s)", where, fast_error)
                return
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise PipelineError(f"{where}: field '{field}': {error.message} (schema {self.schema_path})")


@functools.lru_cache(maxsize=None)
def validator(schema_path: str) -> LineValidator:
    """One validator per process and schema (a compiled schema cannot be sent to a worker)."""
    return LineValidator(schema_path)


def read_split(path: str | Path, schema_path: str | Path | None) -> list[dict]:
    """Every line of a split file as an object, each one valid against the schema (None: JSON
    objects, unchecked); else one PipelineError naming the file and the line."""
    check = validator(str(schema_path)) if schema_path else None
    rows = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            where = f"{path}, line {line_no}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PipelineError(
                    f"{where}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                ) from None
            if not text.strip():
                raise PipelineError(f"{where}: empty line (mlx-lm reads every line as a JSON object)")
            try:
                obj = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                raise PipelineError(f"{where}: not JSON ({err.msg} at column {err.pos + 1})") from None
            if check is not None:
                check.validate(obj, where)
            elif not isinstance(obj, dict):
                raise PipelineError(f"{where}: not a JSON object")
            rows.append(obj)
    if not rows:
        raise PipelineError(f"{path}: holds no line")
    return rows


def mlx_dataset(path: str | Path, schema_path: str | Path | None, tokenizer, mask_prompt: bool):
    """mlx-lm's dataset of a split file (what its load_local_dataset builds), from the checked lines."""
    import types

    from mlx_lm.tuner.datasets import create_dataset

    return create_dataset(read_split(path, schema_path), tokenizer, types.SimpleNamespace(mask_prompt=mask_prompt))
