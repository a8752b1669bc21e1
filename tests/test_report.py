"""The report: self-contained, escaped, with the measured data figures."""

import json
import re

from farense.report_html import build_report


def load(wf, name):
    return json.loads((wf / name).read_text())


def test_report_sections_figures_and_no_external_resources(built_data):
    clean = load(built_data, "results/clean/stats.json")
    records = load(built_data, "results/data/records_stats.json")
    split = load(built_data, "results/data/split_stats.json")
    page = build_report(clean, records, split, {"raw_dir": "resources/raw"})
    for heading in (
        "Summary",
        "Data",
        "Files read",
        "Files skipped",
        "What cleaning changed",
        "Records per split and kind",
        "Leakage check",
        "Conflicting answers",
        "Environment",
    ):
        assert f">{heading}" in page, heading
    assert f"{split['splits']['train']['records']} for training" in page
    assert "<svg" in page and "polyline" in page  # the length histogram is drawn inline
    # self-contained: nothing is fetched
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page


def test_text_from_the_corpus_is_escaped(built_data):
    clean = load(built_data, "results/clean/stats.json")
    records = load(built_data, "results/data/records_stats.json")
    split = load(built_data, "results/data/split_stats.json")
    records["conflicts"] = [
        {
            "question": "<script>alert('golo')</script>",
            "question_key": "x",
            "answers": [{"answer": "<b>negrito</b> & co", "origin": "forum.txt"}],
        }
    ]
    clean["files_skipped"].append({"path": "<img src=x onerror=alert(1)>.txt", "reason": "empty file"})
    page = build_report(clean, records, split, {"raw_dir": "<script>"})
    assert "<script>" not in page and "<b>negrito" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;golo&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;negrito&lt;/b&gt; &amp; co" in page


def evaluation(name, response, adapter=True):
    """A small evaluation file, as scripts/evaluate.py writes it."""
    question = {
        "id": "q1",
        "kind": "qa_curated",
        "support": "seen_fact",
        "question": "Onde joga o <i>Farense</i>?",
        "reference": "No São Luís.",
        "response": response,
        "facts": [{"kind": "name", "value": "São Luís", "stated": True}],
        "fact_correct": True,
        "asserts_specific": True,
        "exact_match": 0.0,
        "f1": 0.5,
        "generated_tokens": 4,
    }
    scores = {
        "questions": 1,
        "questions_with_facts": 1,
        "fact_accuracy": 1.0,
        "fact_accuracy_ci": [1.0, 1.0],
        "exact_match": 0.0,
        "exact_match_ci": [0.0, 0.0],
        "f1": 0.5,
        "f1_ci": [0.5, 0.5],
    }
    unseen = {
        "questions": 0,
        "questions_with_facts": 0,
        "fact_accuracy": None,
        "fact_accuracy_ci": None,
        "exact_match": None,
        "exact_match_ci": None,
        "f1": None,
        "f1_ci": None,
        "hallucination_rate": None,
        "hallucination_rate_ci": None,
    }
    return {
        "compute": "dequantized int4 weights in float32",
        "loss": {"test": {"loss": 5.0, "perplexity": 148.4132, "examples": 20, "batches": 10}},
        "model": name,
        "adapter": f"results/adapters/{name}" if adapter else None,
        "answers": {
            **scores,
            "by_kind": {"qa_curated": scores},
            "by_support": {"seen_fact": scores, "unseen_fact": unseen},
            "generation": {"generated_tokens": 4, "batch_size": 16, "max_new_tokens": 48},
            "per_question": [question],
        },
        "overfitting": {
            "per_step": [{"step": 10, "train_loss": 4.0, "val_loss": 5.0, "gap": 1.0}],
            "kept_step": 10,
            "gap_at_kept_step": 1.0,
        }
        if adapter
        else {},
        "cost": {
            "model_bytes": 750000,
            "adapter_bytes": 84000 if adapter else 0,
            "training_compute": "x" if adapter else None,
        },
        "settings": {"evaluation": {"max_new_tokens": 48}, "batch_size": 2, "max_seq_length": 512},
    }


def run_records():
    """Run records as the stages write them (results/runs/): QLoRA's training, both evaluations."""
    evaluation = {
        "seconds": 3.0,
        "peak_memory_gb": 0.03,
        "generation": {"tokens_per_second": 80.0, "seconds": 0.05, "batch_size": 16},
    }
    return {
        "train_qlora": {
            "train_seconds": 25.0,
            "tokens_per_second": 1500.0,
            "peak_memory_gb": 0.08,
            "resumed_from": None,
            "blas": "OpenBLAS",
            "steps": [
                {"step": 5, "tokens_per_second": 1400.0, "peak_memory_gb": 0.07},
                {"step": 10, "tokens_per_second": 1600.0, "peak_memory_gb": 0.08},
            ],
        },
        "evaluate_base": evaluation,
        "evaluate_qlora": evaluation,
    }


def test_evaluation_sections_escape_answers_and_mark_what_does_not_apply():
    from farense.report_eval import (
        comparison_rows,
        evaluation_section,
        knowledge_section,
        measured_costs,
        samples_section,
    )

    evals = {
        "base": evaluation("base", "<script>alert(1)</script>", adapter=False),
        "qlora": evaluation("qlora", "No São Luís & arredores"),
    }
    costs = measured_costs(run_records())
    rows = {r[0]: r[1:] for r in comparison_rows(evals, costs)}
    assert rows["training time (s)"] == [None, 25.0] and rows["test perplexity"] == [148.4132, 148.4132]
    assert rows["generation tokens/s"] == [80.0, 80.0] and rows["evaluation peak memory (GB)"] == [0.03, 0.03]
    page = knowledge_section(evals, {}, costs) + evaluation_section(evals, costs) + samples_section(evals, 8)
    assert "Peak memory during training (GB)" in page  # drawn from the training's run record
    assert "1.000 [1.00, 1.00]" in page  # fact accuracy on seen facts with its interval
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;i&gt;Farense&lt;/i&gt;" in page and "No São Luís &amp; arredores" in page
    assert "—" in page  # the base model has no training time
    evals["qlora"]["answers"]["per_question"] = []
    evals["base"]["answers"]["per_question"] = []
    assert "No test question was answered" in samples_section(evals, 8)


def test_with_several_training_runs_the_report_leads_with_their_mean():
    import copy

    from farense.comparison import across_runs, compare
    from farense.report_eval import knowledge_section

    evals = {
        "base": evaluation("base", "Não sei.", adapter=False),
        "lora": evaluation("lora", "No São Luís."),
        "qlora": evaluation("qlora", "No São Luís."),
    }
    evals["base"]["answers"]["per_question"][0]["fact_correct"] = False
    one_run = knowledge_section(evals, {"pairs": compare(evals, samples=200), "runs": None})
    assert "One training run of each adapter" in one_run and "mean of" not in one_run
    assert "LoRA minus QLoRA on seen facts: +0.000" in one_run
    wrong = copy.deepcopy(evals["qlora"])  # a second run, from the next seed, that gets the fact wrong
    wrong["answers"]["per_question"][0]["fact_correct"] = False
    replicates = {"qlora-seed1": wrong, "lora-seed1": copy.deepcopy(evals["lora"])}
    runs = across_runs(evals, replicates, first_seed=0, samples=200)
    page = knowledge_section(evals, {"pairs": compare(evals, samples=200), "runs": runs})
    assert "QLoRA (int4 base), mean of 2 runs" in page  # the chart draws the runs' mean, not the first run's 1.0
    assert "QLoRA (int4 base), first run" in page  # the table below it, the shipped adapter's own figures
    assert "Over training runs" in page and "1.000, 0.000" in page and "0.500 [0.00, 1.00]" in page
    assert "One training run of each adapter" not in page
    assert "LoRA minus QLoRA on seen facts, over 2 and 2 training runs: +0.500" in page
    assert "The first runs alone: +0.000" in page


def test_the_interval_chart_makes_room_for_long_labels():
    import re

    from farense.report_html import interval_chart_svg

    label = "QLoRA (int4 base), mean of 5 runs"
    short, long = (interval_chart_svg([(text, 0.5, [0.4, 0.6])]) for text in ("LoRA", label))

    def axis_start(svg):  # where the plot begins: the x of its first tick line
        return float(re.search(r'<line x1="([\d.]+)"', svg).group(1))

    def width(svg):
        return int(re.search(r'<svg [^>]*width="(\d+)"', svg).group(1))

    assert axis_start(short) == 200 and axis_start(long) > 6.6 * len(label)
    assert width(long) - axis_start(long) == width(short) - axis_start(short)  # the plot keeps its width
