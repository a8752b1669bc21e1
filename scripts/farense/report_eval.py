"""Report sections from the evaluation files: the headline, LoRA vs QLoRA side by side, the
overfitting gap, and sample answers. Time, memory and speed come from the jobs' run records
(results/runs/, farense.run_record), not from the evaluation files, which hold none."""

from __future__ import annotations

from .report_html import esc, interval_chart_svg, line_chart_svg, num, table
from .support import LABELS as SUPPORT, SEEN, UNSEEN

LABELS = {
    "base": "int4 base, no adapter",
    "base_full": "unquantized base, no adapter",
    "lora": "LoRA (unquantized base)",
    "qlora": "QLoRA (int4 base)",
}
ORDER = ("base", "base_full", "lora", "qlora")


def _ordered(evals: dict) -> list[tuple[str, dict]]:
    return [(name, evals[name]) for name in ORDER if name in evals]


def _mb(value) -> float | None:
    return round(value / 1e6, 3) if value else None


def measured_costs(runs: dict[str, dict]) -> dict[str, dict]:
    """Per model, the cost figures of its run records ({job: record}): its training
    (train_<model>) and its evaluation (evaluate_<model>); None where a record or figure is missing."""
    costs = {}
    for name in ORDER:
        train, evaluation = runs.get(f"train_{name}") or {}, runs.get(f"evaluate_{name}") or {}
        generation = evaluation.get("generation") or {}
        costs[name] = {
            "training_seconds": train.get("train_seconds"),
            "training_tokens_per_second": train.get("tokens_per_second"),
            "training_peak_memory_gb": train.get("peak_memory_gb"),
            "training_memory": [
                (s["step"], s["peak_memory_gb"]) for s in train.get("steps", []) if s.get("peak_memory_gb") is not None
            ],
            "generation_tokens_per_second": generation.get("tokens_per_second"),
            "evaluation_peak_memory_gb": evaluation.get("peak_memory_gb"),
        }
    return costs


def comparison_rows(evals: dict, costs: dict | None = None) -> list[list]:
    """One row per measure, one column per evaluated model; None where a measure does not apply.
    `costs`: measured_costs of the run records."""
    costs = costs or {}

    def row(label, get):
        values = []
        for name, e in _ordered(evals):
            try:
                values.append(get(e, costs.get(name, {})))
            except (KeyError, TypeError):
                values.append(None)
        return [label] + values

    return [
        row("model weights on disk (MB)", lambda e, c: _mb(e["cost"]["model_bytes"])),
        row("adapter on disk (MB)", lambda e, c: _mb(e["cost"]["adapter_bytes"])),
        row("training time (s)", lambda e, c: c["training_seconds"]),
        row("training tokens/s", lambda e, c: c["training_tokens_per_second"]),
        row("training peak memory (GB)", lambda e, c: c["training_peak_memory_gb"]),
        row("training compute", lambda e, c: e["cost"]["training_compute"]),
        row("test loss", lambda e, c: e["loss"]["test"]["loss"]),
        row("test perplexity", lambda e, c: e["loss"]["test"]["perplexity"]),
        row("fact accuracy, seen facts", lambda e, c: e["answers"]["by_support"][SEEN]["fact_accuracy"]),
        row("fact accuracy, unseen facts", lambda e, c: e["answers"]["by_support"][UNSEEN]["fact_accuracy"]),
        row("hallucination rate, unseen facts", lambda e, c: e["answers"]["by_support"][UNSEEN]["hallucination_rate"]),
        row("exact match (test questions)", lambda e, c: e["answers"]["exact_match"]),
        row("token F1 (test questions)", lambda e, c: e["answers"]["f1"]),
        row(
            "validation - training loss (kept adapter, whole splits)",
            lambda e, c: e["overfitting"]["valid_minus_train_loss"],
        ),
        row("generation tokens/s", lambda e, c: c["generation_tokens_per_second"]),
        row("evaluation peak memory (GB)", lambda e, c: c["evaluation_peak_memory_gb"]),
        row("evaluated with", lambda e, c: e["compute"]),
    ]


def _cell(value) -> str:
    return "—" if value is None else num(value)


def comparison_table(evals: dict, costs: dict | None = None) -> str:
    heads = "".join(f"<th>{esc(LABELS.get(n, n))}</th>" for n, _ in _ordered(evals))
    body = "".join(
        "<tr><td>" + esc(r[0]) + "</td>" + "".join(f'<td class="num">{_cell(v)}</td>' for v in r[1:]) + "</tr>"
        for r in comparison_rows(evals, costs)
    )
    return f'<div class="scroll"><table><thead><tr><th>measured on this run</th>{heads}</tr></thead><tbody>{body}</tbody></table></div>'


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _with_ci(value, ci) -> str:
    return "—" if value is None else f"{value:.3f} {_ci(ci)}"


def knowledge_section(evals: dict, comparison: dict, costs: dict | None = None, stand_in: bool = False) -> str:
    """The report's first section: what the fine-tuned models know, with intervals; then cost
    (`costs`: measured_costs of the run records).
    `stand_in`: the base is the tiny model the pipeline builds, which knows no Portuguese."""
    ordered = _ordered(evals)
    if not ordered:
        return ""
    first = ordered[0][1]["answers"]
    counts = {label: first["by_support"].get(label, {}).get("questions", 0) for label in SUPPORT}
    out = [
        "<section><h2>What the fine-tuned model knows</h2>",
        f"<p>Test questions about facts that training stated in other words (<b>seen facts</b>, {num(counts[SEEN])} questions) and about "
        f"facts that no training record states (<b>unseen facts</b>, {num(counts[UNSEEN])}). <b>Fact accuracy</b> is the share of questions "
        "whose every fact (numbers, dates, names; for a match its result, score, venue, date and competition) the answer states rightly: "
        "an answer in the right form with one wrong fact scores 0; <b>single facts right</b> is the share of a question's facts its answer states "
        "rightly, averaged over the questions. Brackets hold 95% bootstrap intervals over the questions.</p>",
    ]
    if stand_in:
        out.append(
            '<p class="bad">The base is the tiny stand-in the pipeline builds (about a million weights, a few pretraining '
            "steps): it cannot learn these facts, and the figures below only show that the chain runs. Build with a real "
            "model (<code>model.base: gemma3-270m</code>, the default where MLX has a GPU; see the README) to measure "
            "knowledge.</p>"
        )
    runs = (comparison.get("runs") or {}).get("models", {})

    def several(name):  # the model's training runs, when it has more than one (training.replicates)
        return runs[name] if len(runs.get(name, {}).get("seeds", [])) > 1 else None

    out.append("<h3>Fact accuracy on seen facts</h3>")
    out.append(
        interval_chart_svg(
            [
                (
                    f"{LABELS.get(n, n)}, mean of {len(several(n)['seeds'])} runs",
                    several(n)[SEEN]["fact_accuracy"],
                    several(n)[SEEN]["fact_accuracy_ci"],
                )
                if several(n)
                else (
                    LABELS.get(n, n),
                    e["answers"]["by_support"][SEEN]["fact_accuracy"],
                    e["answers"]["by_support"][SEEN]["fact_accuracy_ci"],
                )
                for n, e in ordered
            ],
            xlabel="fact accuracy",
        )
    )
    rows = []
    for n, e in ordered:
        seen, unseen = e["answers"]["by_support"][SEEN], e["answers"]["by_support"][UNSEEN]
        rows.append(
            [
                LABELS.get(n, n) + (", first run" if several(n) else ""),
                _with_ci(seen["fact_accuracy"], seen["fact_accuracy_ci"]),
                _with_ci(seen.get("facts_right"), seen.get("facts_right_ci")),
                _with_ci(seen["f1"], seen["f1_ci"]),
                _with_ci(unseen["fact_accuracy"], unseen["fact_accuracy_ci"]),
                _with_ci(unseen.get("hallucination_rate"), unseen.get("hallucination_rate_ci")),
            ]
        )
    out.append(
        table(
            [
                "model",
                "fact accuracy, seen",
                "single facts right, seen",
                "token F1, seen",
                "fact accuracy, unseen",
                "asserts a specific answer, unseen (hallucination rate)",
            ],
            rows,
        )
    )
    pairs = comparison.get("pairs", {})
    if pairs:
        rows = []
        for pair in pairs.values():
            d = pair[SEEN]["fact_correct"]
            if d:
                verdict = "yes: a real difference" if d["excludes_zero"] else "no: within what the questions allow"
                rows.append([pair["label"], f"{d['difference']:+.3f}", _ci(d["ci"]), verdict])
        out.append("<h3>Paired differences, fact accuracy on seen facts</h3>")
        out.append(table(["difference", "value", "95% interval", "interval excludes 0"], rows))
        lq = pairs.get("lora-qlora", {}).get(SEEN, {}).get("fact_correct")
        over_runs = ((comparison.get("runs") or {}).get("pairs", {}).get("lora-qlora", {}).get(SEEN) or {}).get(
            "fact_correct"
        )
        if over_runs and max(over_runs["runs"]) > 1:
            a, b = over_runs["runs"]
            out.append(
                f"<p>LoRA minus QLoRA on seen facts, over {a} and {b} training runs: {over_runs['difference']:+.3f}, "
                f"interval {_ci(over_runs['ci'])}: "
                + (
                    "the interval excludes zero, so the two differ by more than the questions and the seeds explain."
                    if over_runs["excludes_zero"]
                    else "the interval holds zero, so these questions and runs cannot tell the two apart."
                )
                + (f" The first runs alone: {lq['difference']:+.3f}, {_ci(lq['ci'])}." if lq else "")
                + "</p>"
            )
        elif lq:
            out.append(
                f"<p>LoRA minus QLoRA on seen facts: {lq['difference']:+.3f}, interval {_ci(lq['ci'])}: "
                + (
                    "the interval excludes zero, so the two differ on these questions."
                    if lq["excludes_zero"]
                    else "the interval holds zero, so these questions cannot tell the two apart."
                )
                + "</p>"
            )
    out.append(_runs_part(comparison.get("runs"), bool(pairs)))
    costs = costs or {}
    cost = [
        [LABELS.get(n, n)]
        + [
            _cell(v)
            for v in (
                _mb(e["cost"]["model_bytes"]),
                _mb(e["cost"]["adapter_bytes"]) if e["adapter"] else None,
                costs.get(n, {}).get("training_peak_memory_gb"),
                costs.get(n, {}).get("training_seconds"),
            )
        ]
        for n, e in ordered
    ]
    out.append(
        "<h3>Cost</h3>"
        + table(["model", "model on disk (MB)", "adapter (MB)", "training peak memory (GB)", "training time (s)"], cost)
    )
    out.append("</section>")
    return "".join(out)


def _runs_part(runs: dict | None, trained: bool) -> str:
    """The training runs (training.replicates): each model's runs on seen facts, their mean with
    the interval over questions and runs, and the differences over the runs; with one run, what
    its figures leave out."""
    if not runs:
        return (
            "<p>One training run of each adapter: the intervals above cover the sample of questions, not the chance of "
            "the training run itself (its seed), which can move fact accuracy as much (BENCHMARKS.md 7.4). "
            "<code>training.replicates</code> trains more runs and puts both in the intervals.</p>"
            if trained
            else ""
        )
    rows = []
    for name, model in runs["models"].items():
        seen = model[SEEN]
        if len(model["seeds"]) < 2 or seen["fact_accuracy"] is None:
            continue
        per_run = ", ".join(f"{v:.3f}" for v in seen["fact_accuracy_runs"])
        rows.append(
            [
                LABELS.get(name, name),
                ", ".join(str(s) for s in model["seeds"]),
                per_run,
                _with_ci(seen["fact_accuracy"], seen["fact_accuracy_ci"]),
                _cell(seen["fact_accuracy_sd"]),
            ]
        )
    out = [
        "<h3>Over training runs</h3>",
        "<p>Each adapter trained from several seeds (<code>training.replicates</code>); the interval resamples the "
        "questions and the runs.</p>",
        table(["model", "seeds", "fact accuracy of each run, seen", "mean, seen", "standard deviation"], rows),
    ]
    rows = []
    for pair in runs["pairs"].values():
        d = pair[SEEN]["fact_correct"]
        if d and max(d["runs"]) > 1:
            verdict = "yes: a real difference" if d["excludes_zero"] else "no: within what the questions and runs allow"
            rows.append(
                [pair["label"], f"{d['difference']:+.3f}", _ci(d["ci"]), "/".join(map(str, d["runs"])), verdict]
            )
    if rows:
        out.append(table(["difference of the means", "value", "95% interval", "runs", "interval excludes 0"], rows))
    return "".join(out)


def headline(evals: dict, costs: dict | None = None) -> list[tuple[str, object]]:
    """Cards for the summary: the QLoRA adapter's figures, against the base where it helps."""
    q = evals.get("qlora")
    if not q:
        return []
    items = [("QLoRA fact accuracy, seen facts", q["answers"]["by_support"][SEEN]["fact_accuracy"])]
    if "base" in evals:
        items.append(
            ("int4 base fact accuracy, seen facts", evals["base"]["answers"]["by_support"][SEEN]["fact_accuracy"])
        )
    items.append(("QLoRA test perplexity", q["loss"]["test"]["perplexity"]))
    if "base" in evals:
        items.append(("base test perplexity", evals["base"]["loss"]["test"]["perplexity"]))
    items += [
        ("QLoRA token F1", q["answers"]["f1"]),
        ("QLoRA exact match", q["answers"]["exact_match"]),
        ("QLoRA training seconds", (costs or {}).get("qlora", {}).get("training_seconds")),
        ("int4 model MB", _mb(q["cost"]["model_bytes"])),
    ]
    return [(k, v) for k, v in items if v is not None]


def evaluation_section(evals: dict, costs: dict | None = None) -> str:
    out = ["<section><h2>LoRA vs QLoRA</h2>"]
    any_eval = next(iter(evals.values()))
    settings = any_eval["settings"]
    out.append(
        f"<p>Every figure below was measured by this run of the pipeline on the test split "
        f"({num(any_eval['loss']['test']['examples'])} examples for the loss, {num(any_eval['answers']['questions'])} questions for the answers; "
        f"batch {num(settings['batch_size'])}, sequences up to {num(settings['max_seq_length'])} tokens, greedy answers up to "
        f"{num(settings['evaluation']['max_new_tokens'])} tokens). The loss is the mean over answer tokens, as <code>mlx_lm lora --test</code> computes it; "
        "exact match and F1 compare normalised answers (case, punctuation and articles ignored, accents kept).</p>"
    )
    costs = costs or {}
    out.append(comparison_table(evals, costs))
    gaps = {
        LABELS.get(n, n): [(r["step"], r["gap"]) for r in e["overfitting"].get("per_step", [])]
        for n, e in _ordered(evals)
    }
    if any(gaps.values()):
        out.append("<h3>Overfitting gap: validation minus training loss at each validation step</h3>")
        out.append(line_chart_svg(gaps, height=180, xlabel="iteration", ylabel="gap"))
        rows = [
            [LABELS.get(n, n), e["overfitting"].get("kept_step"), e["overfitting"].get("gap_at_kept_step")]
            for n, e in _ordered(evals)
            if e["overfitting"].get("per_step")
        ]
        out.append(table(["adapter", "kept step", "gap at the kept step"], rows, {1, 2}))
        out.append(
            "<p><small>The training loss at a step is the mean over the iterations since the previous metrics row.</small></p>"
        )
    memory = {name: c["training_memory"] for name, c in costs.items() if c.get("training_memory")}
    if any(memory.values()):
        out.append(
            "<h3>Peak memory during training (GB)</h3>"
            + line_chart_svg(memory, height=160, xlabel="iteration", ylabel="GB")
        )
    kinds = sorted({k for _, e in _ordered(evals) for k in e["answers"]["by_kind"]})
    if kinds:
        rows = [
            [LABELS.get(n, n)]
            + [
                f"{num(e['answers']['by_kind'].get(k, {}).get('f1'))} / {num(e['answers']['by_kind'].get(k, {}).get('exact_match'))}"
                for k in kinds
            ]
            for n, e in _ordered(evals)
        ]
        out.append("<h3>F1 / exact match by kind of question</h3>" + table(["model"] + kinds, rows))
    out.append("</section>")
    return "".join(out)


def samples_section(evals: dict, count: int) -> str:
    """Up to `count` test questions of each support label with the reference and every model's
    answer, then every question in a details block."""
    ordered = _ordered(evals)
    if not ordered or count == 0:
        return ""
    answers = {name: {r["id"]: r for r in e["answers"]["per_question"]} for name, e in ordered}
    every = ordered[0][1]["answers"]["per_question"]
    if not every:
        return (
            "<section><h2>Sample answers</h2><p>No test question was answered: the test split has no question/answer "
            "records, or <code>evaluation.max_questions</code> is 0.</p></section>"
        )
    out = [
        "<section><h2>Sample answers</h2>",
        f"<p>The first {num(count)} test questions of each kind of support, answered greedily by each model "
        "(in brackets: whether every fact is right, and token F1).</p>",
    ]
    for label in SUPPORT:
        chosen = [q for q in every if q["support"] == label][:count]
        if not chosen:
            continue
        out.append(f"<h3>{'Seen facts' if label == SEEN else 'Unseen facts'}</h3>")
        for q in chosen:
            rows = [["reference", q["reference"]]]
            for name, _ in ordered:
                r = answers[name].get(q["id"])
                mark = (
                    "—"
                    if not r or r["fact_correct"] is None
                    else ("facts right" if r["fact_correct"] else "a fact wrong or missing")
                )
                rows.append([LABELS.get(name, name), f"{r['response']}  [{mark}; F1 {r['f1']:.2f}]" if r else "—"])
            out.append(f"<h4>{esc(q['question'])}</h4>" + table(["", "answer"], rows))
    out.append("<details><summary>Every test question, per model</summary>")
    rows = []
    for q in every:
        rows.append(
            [q["question"], q["kind"], q["support"]] + [_fact_mark(answers[n].get(q["id"])) for n, _ in ordered]
        )
    out.append(table(["question", "kind", "support"] + [f"facts {LABELS.get(n, n)}" for n, _ in ordered], rows))
    out.append("</details></section>")
    return "".join(out)


def _fact_mark(row) -> str:
    if not row or row["fact_correct"] is None:
        return "—"
    return "right" if row["fact_correct"] else "wrong"
