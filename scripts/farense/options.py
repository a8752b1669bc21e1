"""Options dataclasses built from a config section."""

from __future__ import annotations


def from_config(cls, cfg: dict):
    """An instance of the dataclass `cls` from a config mapping: keys it does not know are left
    out (they belong to other stages), lists become tuples (options are immutable)."""
    names = cls.__dataclass_fields__
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in names})
