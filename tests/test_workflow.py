"""The real Snakemake on the real workflow: what runs, what reruns, what stops with which message."""

import json
import os
import re
import shutil

import pytest

from conftest import BUILD_LOG, ROOT, copy_built, snakemake

# The report depends on the trained adapters: build it with the very small test model.
TINY = ("--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml"))
EVALUATION = {"compare_models": 1, "model_card": 2, "lineage": 1, "report": 1}  # what follows any evaluation
MODEL_STAGES = {
    "build_base_model": 1,
    "convert_int4": 1,
    "train_qlora": 1,
    "train_lora": 1,
    "evaluate": 4,
    **EVALUATION,
}
AFTER_TRAINING = {"train_qlora": 1, "train_lora": 1, "evaluate": 2, **EVALUATION}

DATA_TARGETS = ("results/data/train.jsonl", "results/data/valid.jsonl", "results/data/test.jsonl")


def planned_jobs(workdir, *args):
    """Rules a dry run would execute, with their counts."""
    out = snakemake(workdir, "-n", *args).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_data_targets_build_then_nothing_to_do(workflow):
    out = snakemake(workflow, *DATA_TARGETS).stdout
    for rule in ("clean_text", "build_records", "split_jsonl"):
        assert f"rule {rule}:" in out
    for target in DATA_TARGETS:
        assert (workflow / target).stat().st_size > 0
    assert planned_jobs(workflow, *DATA_TARGETS) == {}
    stats = json.loads((workflow / "results/data/split_stats.json").read_text())
    assert stats["leakage_check"]["passed"]
    for name in ("clean_text", "build_records", "split_jsonl"):
        assert (workflow / f"results/logs/{name}.log").exists()
        assert (workflow / f"results/benchmarks/{name}.tsv").exists()


def test_report_target_builds_everything(tiny_report):
    workflow = tiny_report  # built from nothing by one `snakemake results/report.html` (conftest.tiny_report)
    out = (workflow.parent / BUILD_LOG).read_text(encoding="utf-8")
    for rule in ("clean_text", "build_records", "split_jsonl", *MODEL_STAGES):
        if rule in ("evaluate", "model_card"):
            continue  # printed once per model, checked below
        assert f"rule {rule}:" in out, rule
    page = (workflow / "results/report.html").read_text()
    assert "Leakage check" in page and "Conflicting answers" in page and "Model and training" in page
    assert "a tiny Mistral-architecture model built by the pipeline" in page
    assert out.count("rule evaluate:") == 4 and out.count("rule model_card:") == 2
    assert page.count("polyline") >= 5  # length histogram, loss and learning-rate curves of both adapters
    assert planned_jobs(workflow, "results/report.html", *TINY) == {}


def test_only_changed_stages_rerun(tiny_report, tmp_path):
    workflow = copy_built(tiny_report, tmp_path / "wf")  # a built tree with the same configuration: nothing to do
    assert planned_jobs(workflow, "results/report.html", *TINY) == {}
    # a new split seed: the split and what follows (the tiny base is pretrained on the training
    # split), not cleaning or records
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", 'split={"seed": 7}') == {
        "split_jsonl": 1,
        **MODEL_STAGES,
    }
    # a record option: records onwards
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", 'records={"chunk_size_chars": 600}') == {
        "build_records": 1,
        "split_jsonl": 1,
        **MODEL_STAGES,
    }
    # a training option: training, the adapters' evaluations, the lineage graph and the report
    assert (
        planned_jobs(workflow, "results/report.html", *TINY, "--config", 'training={"learning_rate": 0.003}')
        == AFTER_TRAINING
    )
    # an evaluation option: the evaluations, the lineage graph and the report only
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", 'evaluation={"max_new_tokens": 16}') == {
        "evaluate": 4,
        **EVALUATION,
    }
    # how many sample answers the report shows: the report only
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", 'evaluation={"samples_in_report": 2}') == {
        "report": 1
    }
    # how a job runs (threads, a time limit), not what it makes: the report only, which shows the configuration
    assert planned_jobs(
        workflow, "results/report.html", *TINY, "--config", 'cleaning={"threads": 1}', 'training={"runtime": 30}'
    ) == {"report": 1}
    # where the jobs share their GPU kernels: how fast, never what (it is no param of any rule)
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", "kernel_cache=/elsewhere") == {}
    # the LoRA baseline switched off: nothing to train or evaluate, the graph and the report change
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", 'training={"train_lora": false}') == {
        **EVALUATION,
        "model_card": 1,
    }
    # more training runs of each adapter: those runs and their evaluations, never the first ones
    assert planned_jobs(workflow, "results/report.html", *TINY, "--config", 'training={"replicates": 3}') == {
        "train_qlora_replicate": 2,
        "train_lora_replicate": 2,
        "evaluate": 4,
        **EVALUATION,
    }
    # an edited library module that a stage imports: that stage onwards
    module = workflow / "scripts/farense/training.py"
    text, stat = module.read_text(), module.stat()
    module.write_text(text + "\n")
    assert planned_jobs(workflow, "results/report.html", *TINY) == AFTER_TRAINING
    # put back as it was (its text and its time): nothing to do again, so the tree is still built
    # and the next check needs no rebuild
    module.write_text(text)
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(workflow, "results/report.html", *TINY) == {}
    # an edited raw file: cleaning onwards
    raw = workflow / "resources/raw/estadios.txt"
    raw.write_bytes(raw.read_bytes() + "\nO São Luís fica no centro de Faro.\n".encode("utf-8"))
    assert planned_jobs(workflow, "results/report.html", *TINY) == {
        "clean_text": 1,
        "build_records": 1,
        "split_jsonl": 1,
        **MODEL_STAGES,
    }


def test_replicates_train_from_the_next_seeds_and_enter_the_comparison(tiny_report, tmp_path):
    """training.replicates: 2 on the built tree trains qlora-seed1 from seed 1 (tests/config/tiny.yaml
    keeps seed 0) into its own folder, evaluates it, and the comparison holds both runs."""
    workflow = copy_built(tiny_report, tmp_path / "wf")
    config = ("--config", 'training={"replicates": 2, "train_lora": false}')
    snakemake(workflow, "results/eval/comparison.json", *TINY, *config)
    first, second = workflow / "results/adapters/qlora", workflow / "results/adapters/qlora-seed1"
    assert json.loads((second / "adapter_config.json").read_text())["training"]["seed"] == 1
    assert json.loads((first / "adapter_config.json").read_text())["training"]["seed"] == 0
    assert (second / "adapters.safetensors").read_bytes() != (first / "adapters.safetensors").read_bytes()
    lineage = json.loads((workflow / "results/lineage/train_qlora-seed1.json").read_text())
    assert lineage["rule"] == "train_qlora_replicate" and lineage["params"]["training"]["seed"] == 1
    runs = json.loads((workflow / "results/eval/comparison.json").read_text())["runs"]
    qlora = runs["models"]["qlora"]
    assert qlora["seeds"] == [0, 1] and len(qlora["seen_fact"]["fact_accuracy_runs"]) == 2
    evals = [json.loads((workflow / f"results/eval/{n}.json").read_text()) for n in ("qlora", "qlora-seed1")]
    assert evals[1]["adapter"].endswith("qlora-seed1")
    seen = [e["answers"]["by_support"]["seen_fact"]["fact_accuracy"] for e in evals]
    assert qlora["seen_fact"]["fact_accuracy_runs"] == seen
    assert runs["pairs"]["qlora-base"]["seen_fact"]["fact_correct"]["runs"] == [2, 1]
    assert "lora" not in runs["models"]  # switched off: no runs of it
    snakemake(workflow, "results/report.html", *TINY, *config)
    assert "Over training runs" in (workflow / "results/report.html").read_text()
    assert (
        "the first of 2 training runs of its recipe (seeds 0, 1)" in (workflow / "results/cards/qlora.md").read_text()
    )
    jobs = json.loads((workflow / "results/lineage.json").read_text())["jobs"]
    assert {"train_qlora-seed1", "evaluate_qlora-seed1"} <= jobs.keys()


def test_seed_changes_the_split_files(workflow):
    snakemake(workflow, *DATA_TARGETS)
    before = (workflow / "results/data/test.jsonl").read_bytes()
    snakemake(workflow, *DATA_TARGETS, "--config", 'split={"seed": 7}')
    assert (workflow / "results/data/test.jsonl").read_bytes() != before


def test_raw_dir_can_point_elsewhere(workflow, tmp_path):
    other = tmp_path / "meu_corpus"
    other.mkdir()
    shutil.copy(workflow / "resources/raw/historia_fundacao.txt", other / "historia.txt")
    shutil.copy(workflow / "resources/raw/dados/perguntas_respostas.json", other / "qa.json")
    shutil.copy(workflow / "resources/raw/dados/resultados_farense.csv", other / "jogos.csv")
    snakemake(workflow, *DATA_TARGETS, "--config", f"raw_dir={other}")
    stats = json.loads((workflow / "results/clean/stats.json").read_text())
    assert stats["raw_dir"] == str(other) and set(stats["files"]) == {"historia.txt", "qa.json", "jogos.csv"}
    # a new file there reruns cleaning
    (other / "nota.md").write_text(
        "# Nota\n\nO Farense joga de preto e branco desde a fundação, em Faro, no Algarve.\n"
    )
    assert planned_jobs(workflow, *DATA_TARGETS, "--config", f"raw_dir={other}")["clean_text"] == 1


@pytest.mark.parametrize(
    "config, message",
    [
        ('split={"sed": 7}', "unknown key 'split.sed' (did you mean 'seed'?)"),
        ('split={"seed": "sete"}', "split.seed: 'sete' is not of type 'integer'"),
        ("bogus=1", "unknown key 'bogus'"),
        ('split={"format": "alpaca"}', "split.format: 'alpaca' is not one of"),
        ('records={"format": "chat"}', "unknown key 'records.format' (renamed: 'split.format')"),
        (
            'cleaning={"near_duplicate_threshold": 0.5}',
            "unknown key 'cleaning.near_duplicate_threshold' (renamed: 'cleaning.dedup_threshold')",
        ),
        ('split={"valid_fraction": 0.9}', "split.valid_fraction: 0.9 is greater than the maximum of 0.5"),
        ('training={"profile": "8gb"}', "unknown key 'training.profile' (renamed: 'training.memory')"),
    ],
)
def test_bad_config_stops_naming_the_key(workflow, config, message):
    proc = snakemake(workflow, "-n", *DATA_TARGETS, "--config", config, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_raw_dir_is_a_clear_error(workflow, tmp_path, make):
    raw = tmp_path / "nada"
    if make == "empty":
        raw.mkdir()
    proc = snakemake(workflow, *DATA_TARGETS, "--config", f"raw_dir={raw}", check=False)
    assert proc.returncode != 0
    assert f"raw_dir '{raw}'" in proc.stdout
    assert not (workflow / "results/clean/corpus.parquet").exists()


def test_lint_is_clean(workflow):
    assert "Congratulations" in snakemake(workflow, "--lint").stdout


def test_data_stages_are_given_the_cores(workflow):
    """--cores reaches the stages as threads; a corpus this small is cleaned in one process."""
    snakemake(workflow, "results/clean/corpus.parquet", cores=2)
    log = (workflow / "results/logs/clean_text.log").read_text()
    assert "1 worker process(es) of the 2 thread(s) given" in log


def schema_leaves(schema, prefix=""):
    """(dotted key, schema) of every leaf key of the config schema."""
    for key, sub in schema["properties"].items():
        if "properties" in sub:
            yield from schema_leaves(sub, f"{prefix}{key}.")
        else:
            yield prefix + key, sub


def readme_config_keys():
    """The keys README.md's configuration table names: `a.b` / `c` is a.b and a.c; `a.*` all under a."""
    table = (ROOT / "README.md").read_text().split("| key | default | what it does |")[1].split("\n\n")[0]
    keys = set()
    for row in table.splitlines()[2:]:
        names = [n.strip().strip("`") for n in row.split("|")[1].split(" / ")]
        prefix = names[0].rsplit(".", 1)[0] + "." if "." in names[0] else ""
        keys.update([names[0], *(prefix + n for n in names[1:])])
    return keys


def test_config_yaml_schema_and_readme_agree():
    import yaml

    schema = yaml.safe_load((ROOT / "config/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    documented = readme_config_keys()
    for key, sub in schema_leaves(schema):
        value = config
        for part in key.split("."):
            value = value[part]
        assert value == sub["default"], f"{key}: config.yaml has {value!r}, the schema's default is {sub['default']!r}"
        assert sub.get("description"), key
        assert key in documented or any(key.startswith(d[:-1]) for d in documented if d.endswith(".*")), (
            f"{key} is not in README.md's table"
        )


def test_a_cluster_dry_run_shows_what_each_job_asks_for(workflow):
    """The issue's acceptance: no --cores, and gpu and mem_mb on the model stages (with a second
    training run of each adapter, training.replicates)."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -r requirements-slurm.txt")
    out = snakemake(
        workflow,
        "-n",
        "--executor",
        "slurm",
        "--jobs",
        "8",
        "results/report.html",
        "--config",
        'training={"replicates": 2}',
        cores=None,
    ).stdout
    resources = {}
    for block in out.split("\nrule ")[1:]:
        line = next(x for x in block.splitlines() if x.strip().startswith("resources:"))
        resources[block.split(":")[0]] = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    for rule in ("build_base_model", "convert_int4", "train_qlora", "train_lora", "evaluate"):
        assert resources[rule]["gpu"] == "1" and int(resources[rule]["mem_mb"]) > 2048, rule
    assert resources["train_qlora"]["runtime"] == "240" and resources["evaluate"]["runtime"] == "60"
    # the second runs of training.replicates ask for what the first runs ask for
    assert resources["train_qlora_replicate"] == resources["train_qlora"]
    assert resources["train_lora_replicate"] == resources["train_lora"]
    for rule in ("clean_text", "build_records", "split_jsonl", "compare_models", "model_card", "lineage", "report"):
        assert (
            "gpu" not in resources[rule]
            and int(resources[rule]["mem_mb"]) >= 512
            and int(resources[rule]["runtime"]) >= 10
        ), rule


def test_the_workflow_profile_runs_one_gpu_job_at_a_time(tiny_report):
    """tiny_report was built with --cores 2: after build_base_model, convert_int4, train_lora and
    the unquantized base's evaluation were ready together, but profiles/default's gpu=1 let them
    run one at a time (the times each job's provenance entry records do not overlap)."""
    gpu_rules = {"build_base_model", "convert_int4", "train_qlora", "train_lora", "evaluate"}
    entries = [json.loads(p.read_text()) for p in (tiny_report / "results/lineage").glob("*.json")]
    spans = sorted((e["started"], e["ended"], e["job"]) for e in entries if e["rule"] in gpu_rules)
    assert len(spans) == 8
    for (_, ended, job), (started, _, following) in zip(spans, spans[1:]):
        assert started >= ended, f"{following} started at {started}, before {job} ended at {ended}"
