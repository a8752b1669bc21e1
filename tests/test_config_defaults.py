"""Every default is written in config/schemas/config.schema.yaml (the Snakefile fills a missing key
from it). Three other places repeat them for their readers: config/config.yaml (every key, with a
comment), the options dataclasses (for code that runs outside Snakemake: tests, benchmarks) and
the README's configuration table. They must say the same."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from conftest import ROOT
from farense.cleaning import CleaningOptions
from farense.config_check import fill_defaults, load_schema
from farense.corpus import DedupOptions
from farense.evaluation import EvalOptions
from farense.memory_presets import PRESET_KEYS, resolve_training
from farense.records import RecordOptions
from farense.split_options import SplitOptions
from farense.tiny_model import TinyModelOptions
from farense.training import TrainOptions

SCHEMA = load_schema(str(ROOT / "config/schemas/config.schema.yaml"))


def flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


DEFAULTS = flat(fill_defaults({}, SCHEMA))


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return float(a) == float(b)
    return a == b


def test_every_schema_key_has_a_default():
    def walk(schema, where):
        for key, sub in schema.get("properties", {}).items():
            assert "default" in sub, f"{where}{key} has no default in the schema"
            walk(sub, f"{where}{key}.")

    walk(SCHEMA, "")


def test_config_yaml_holds_every_key_at_its_default():
    config = flat(yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8")))
    assert sorted(config) == sorted(DEFAULTS)
    assert {k: v for k, v in config.items() if not same(v, DEFAULTS[k])} == {}


@pytest.mark.parametrize(
    "cls, section, rename",
    [
        (CleaningOptions, "cleaning", {}),
        (
            DedupOptions,
            "cleaning",
            {
                "exact": "dedup_exact",
                "near": "dedup_near",
                "threshold": "dedup_threshold",
                "min_chars": "dedup_min_chars",
            },
        ),
        (RecordOptions, "records", {}),
        (SplitOptions, "split", {}),
        (EvalOptions, "evaluation", {}),
        (TinyModelOptions, "model.tiny", {}),
    ],
)
def test_dataclass_defaults_are_the_schema_s(cls, section, rename):
    differ = {}
    for f in dataclasses.fields(cls):
        key = f"{section}.{rename.get(f.name, f.name)}"
        assert key in DEFAULTS, f"{cls.__name__}.{f.name}: no config key {key}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not same(default, DEFAULTS[key]):
            differ[key] = (default, DEFAULTS[key])
    assert differ == {}


def test_training_defaults_are_the_schema_s():
    """TrainOptions from the default config (its memory preset's values aside: they are the preset's)."""
    resolved = resolve_training(fill_defaults({}, SCHEMA)["training"], ROOT / "config/memory")
    differ = {}
    for f in dataclasses.fields(TrainOptions):
        if f.name in PRESET_KEYS or f.name not in resolved:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not same(default, resolved[f.name]):
            differ[f.name] = (default, resolved[f.name])
    assert differ == {}


def readme_table() -> dict:
    """{key: the default the README's configuration table gives} for every row that gives one."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| key | default | what it does |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| (`[^|]+`) \| ([^|]+) \|", line)
        if not match or "see config.yaml" in match.group(2):
            continue
        keys = [k.strip().strip("`") for k in match.group(1).split(" / ")]
        parent = keys[0].rsplit(".", 1)[0] + "." if "." in keys[0] else ""
        keys = [keys[0]] + [parent + k for k in keys[1:]]
        values = [v.strip().strip("`") for v in match.group(2).split(" / ")]
        if len(values) == 1:
            values *= len(keys)
        rows.update(zip(keys, values))
    return rows


def readme_value(text: str, default):
    if isinstance(default, str):
        return "" if text == '""' else text
    value = yaml.safe_load(text)
    return float(value) if isinstance(value, str) and re.fullmatch(r"[-+0-9.e]+", value) else value


def test_readme_table_gives_the_schema_s_defaults():
    rows = readme_table()
    assert "split.format" in rows and "cleaning.dedup_threshold" in rows
    unknown = sorted(set(rows) - set(DEFAULTS))
    assert unknown == []
    differ = {k: (v, DEFAULTS[k]) for k, v in rows.items() if not same(readme_value(v, DEFAULTS[k]), DEFAULTS[k])}
    assert differ == {}
    missing = sorted(k for k in DEFAULTS if k not in rows and not k.startswith("model.tiny."))
    assert missing == []
