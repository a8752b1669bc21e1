"""Configuration errors as short messages that name the key, before Snakemake's own validation."""

from __future__ import annotations

import copy
import difflib

import jsonschema
import yaml

# libyaml's loader where PyYAML has it: the pure-Python one took 0.27 s of every Snakemake
# command for the schema and the config files (cProfile of a no-op dry run).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=YAML_LOADER)


def load_schema(schema_path: str) -> dict:
    return load_yaml(schema_path)


def fill_defaults(config: dict, schema: dict) -> dict:
    """Set, in place, every key the schema gives a default and the config lacks, inside objects
    too: what snakemake.utils.validate(set_default=True) does, without reading and checking the
    schema a second time (config_errors has checked it)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and "properties" in sub:
            fill_defaults(config[key], sub)
    return config


_TRUE, _FALSE = {"true", "yes", "on"}, {"false", "no", "off"}
# Keys that were renamed or moved: an old configuration gets the new name instead of a guess.
RENAMED = {
    "training.profile": "training.memory",
    # the two near-duplicate thresholds had one name (cleaning 0.5, split 0.7)
    "cleaning.near_duplicate_threshold": "cleaning.dedup_threshold",
    # read by split_jsonl (and, for format, training and evaluation), never by build_records
    "records.format": "split.format",
    "records.system_prompt": "split.system_prompt",
    "records.continuation_prompt": "split.continuation_prompt",
    "records.keep_conflicts": "split.keep_conflicts",
}


def _coerce(value, schema: dict):
    """Snakemake's --config reads nested values as strings ('split={"seed": 7}' gives "7"):
    turn such a string into the type the schema asks for, when it reads as one."""
    kind = schema.get("type")
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key in value:
                value[key] = _coerce(value[key], sub)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(v, schema["items"]) for v in value]
    if not isinstance(value, str):
        return value
    kinds = kind if isinstance(kind, list) else [kind]
    if "null" in kinds and value.lower() in ("null", "none", "~"):
        return None
    for kind in kinds:
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value)
        except ValueError:
            continue
        if kind == "boolean" and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    return value


def coerce_config(config: dict, schema: dict) -> dict:
    """Coerce, in place, string values given on the command line to the schema's types."""
    return _coerce(config, schema)


def config_errors(config: dict, schema: dict) -> list[str]:
    """One line per problem, e.g. "split.seed: 'x' is not of type 'integer'" or
    "unknown key 'split.sed' (did you mean 'seed'?)"."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(known)):
                full = f"{where + '.' if where else ''}{key}"
                close = difflib.get_close_matches(str(key), known, n=1)
                if full in RENAMED:
                    hint = f" (renamed: '{RENAMED[full]}')"
                else:
                    hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
                problems.append(f"unknown key '{full}'{hint}")
        else:
            problems.append(f"{where or '(top level)'}: {error.message}")
    return problems


def model_config_errors(config: dict) -> list[str]:
    """Checks across keys that a schema cannot express."""
    problems = []
    model, quantization = config.get("model", {}), config.get("quantization", {})
    if model.get("base") in ("tiny", "auto"):  # auto is tiny on a CPU
        tiny, group = model.get("tiny", {}), quantization.get("group_size")
        for key in ("hidden_size", "intermediate_size"):
            if isinstance(tiny.get(key), int) and isinstance(group, int) and tiny[key] % group:
                problems.append(
                    f"model.tiny.{key} ({tiny[key]}) must be a multiple of quantization.group_size ({group})"
                )
        heads, kv = tiny.get("num_attention_heads"), tiny.get("num_key_value_heads")
        if isinstance(heads, int) and isinstance(kv, int) and isinstance(tiny.get("hidden_size"), int):
            if tiny["hidden_size"] % heads or heads % kv:
                problems.append(
                    "model.tiny: hidden_size must divide by num_attention_heads, and num_attention_heads by num_key_value_heads"
                )
    return problems
