"""Options dataclasses built from a config section: the one way from config to options."""

from __future__ import annotations

from .errors import PipelineError


def from_config(cls, cfg: dict, ignore: tuple[str, ...] = ()):
    """An instance of the dataclass `cls` from a config mapping; lists become tuples (options are
    immutable). A key the dataclass does not know stops with a message naming it, instead of being
    dropped unseen; keys that feed another part of the same job are named in `ignore`."""
    names = cls.__dataclass_fields__
    unknown = sorted(set(cfg) - set(names) - set(ignore))
    if unknown:
        raise PipelineError(
            f"{cls.__name__}: unknown option(s) {', '.join(map(repr, unknown))} (known: {', '.join(names)})"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in names})
