"""Report sections from the evaluation files: the headline, LoRA vs QLoRA side by side, the
overfitting gap, and sample answers."""

from __future__ import annotations

from .report_html import esc, line_chart_svg, num, table

LABELS = {"base": "int4 base, no adapter", "lora": "LoRA (fp16 base)", "qlora": "QLoRA (int4 base)"}
ORDER = ("base", "lora", "qlora")


def _ordered(evals: dict) -> list[tuple[str, dict]]:
    return [(name, evals[name]) for name in ORDER if name in evals]


def _mb(value) -> float | None:
    return round(value / 1e6, 3) if value else None


def comparison_rows(evals: dict) -> list[list]:
    """One row per measure, one column per evaluated model; None where a measure does not apply."""
    def row(label, get):
        values = []
        for _, e in _ordered(evals):
            try:
                values.append(get(e))
            except (KeyError, TypeError):
                values.append(None)
        return [label] + values

    return [
        row("model weights on disk (MB)", lambda e: _mb(e["cost"]["model_bytes"])),
        row("adapter on disk (MB)", lambda e: _mb(e["cost"]["adapter_bytes"])),
        row("training time (s)", lambda e: e["cost"]["training_seconds"]),
        row("training tokens/s", lambda e: e["cost"]["training_tokens_per_second"]),
        row("training peak memory (GB)", lambda e: e["cost"]["training_peak_memory_gb"]),
        row("training compute", lambda e: e["cost"]["training_compute"]),
        row("test loss", lambda e: e["loss"]["test"]["loss"]),
        row("test perplexity", lambda e: e["loss"]["test"]["perplexity"]),
        row("exact match (test questions)", lambda e: e["answers"]["exact_match"]),
        row("token F1 (test questions)", lambda e: e["answers"]["f1"]),
        row("validation - training loss (kept adapter, whole splits)", lambda e: e["overfitting"]["valid_minus_train_loss"]),
        row("generation tokens/s", lambda e: e["answers"]["generation"]["tokens_per_second"]),
        row("time to first token, median (s)", lambda e: e["answers"]["generation"]["time_to_first_token_median"]),
        row("evaluation peak memory (GB)", lambda e: e["cost"]["evaluation_peak_memory_gb"]),
        row("evaluated with", lambda e: e["compute"]),
    ]


def _cell(value) -> str:
    return "—" if value is None else num(value)


def comparison_table(evals: dict) -> str:
    heads = "".join(f"<th>{esc(LABELS.get(n, n))}</th>" for n, _ in _ordered(evals))
    body = "".join(
        "<tr><td>" + esc(r[0]) + "</td>" + "".join(f'<td class="num">{_cell(v)}</td>' for v in r[1:]) + "</tr>"
        for r in comparison_rows(evals)
    )
    return f'<div class="scroll"><table><thead><tr><th>measured on this run</th>{heads}</tr></thead><tbody>{body}</tbody></table></div>'


def headline(evals: dict) -> list[tuple[str, object]]:
    """Cards for the summary: the QLoRA adapter's figures, against the base where it helps."""
    q = evals.get("qlora")
    if not q:
        return []
    items = [("QLoRA test perplexity", q["loss"]["test"]["perplexity"])]
    if "base" in evals:
        items.append(("base test perplexity", evals["base"]["loss"]["test"]["perplexity"]))
    items += [("QLoRA token F1", q["answers"]["f1"]), ("QLoRA exact match", q["answers"]["exact_match"]),
              ("QLoRA training seconds", q["cost"]["training_seconds"]), ("int4 model MB", _mb(q["cost"]["model_bytes"]))]
    return [(k, v) for k, v in items if v is not None]


def evaluation_section(evals: dict, trainings: dict) -> str:
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
    out.append(comparison_table(evals))
    gaps = {LABELS.get(n, n): [(r["step"], r["gap"]) for r in e["overfitting"].get("per_step", [])] for n, e in _ordered(evals)}
    if any(gaps.values()):
        out.append("<h3>Overfitting gap: validation minus training loss at each validation step</h3>")
        out.append(line_chart_svg(gaps, height=180, xlabel="iteration", ylabel="gap"))
        rows = [[LABELS.get(n, n), e["overfitting"].get("best_step"), e["overfitting"].get("gap_at_best_step")] for n, e in _ordered(evals) if e["overfitting"].get("per_step")]
        out.append(table(["adapter", "best step (kept)", "gap at the best step"], rows, {1, 2}))
        out.append("<p><small>The training loss at a step is the mean over the iterations since the previous metrics row.</small></p>")
    memory = {name: [(m["step"], m["peak_memory_gb"]) for m in metrics if m.get("peak_memory_gb") is not None] for name, (_, metrics) in trainings.items()}
    if any(memory.values()):
        out.append("<h3>Peak memory during training (GB)</h3>" + line_chart_svg(memory, height=160, xlabel="iteration", ylabel="GB"))
    kinds = sorted({k for _, e in _ordered(evals) for k in e["answers"]["by_kind"]})
    if kinds:
        rows = [[LABELS.get(n, n)] + [f"{num(e['answers']['by_kind'].get(k, {}).get('f1'))} / {num(e['answers']['by_kind'].get(k, {}).get('exact_match'))}" for k in kinds] for n, e in _ordered(evals)]
        out.append("<h3>F1 / exact match by kind of question</h3>" + table(["model"] + kinds, rows))
    out.append("</section>")
    return "".join(out)


def samples_section(evals: dict, count: int) -> str:
    """The first `count` test questions with the reference and every model's answer."""
    ordered = _ordered(evals)
    if not ordered or count == 0:
        return ""
    answers = {name: {r["id"]: r for r in e["answers"]["per_question"]} for name, e in ordered}
    first = ordered[0][1]["answers"]["per_question"][:count]
    if not first:
        return ("<section><h2>Sample answers</h2><p>No test question was answered: the test split has no question/answer "
                "records, or <code>evaluation.max_questions</code> is 0.</p></section>")
    out = ["<section><h2>Sample answers</h2>", f"<p>The first {num(len(first))} test questions, answered greedily by each model (F1 in brackets).</p>"]
    for q in first:
        rows = [["reference", q["reference"]]]
        for name, _ in ordered:
            r = answers[name].get(q["id"])
            rows.append([LABELS.get(name, name), f"{r['response']}  [{r['f1']:.2f}]" if r else "—"])
        out.append(f"<h3>{esc(q['question'])}</h3>" + table(["", "answer"], rows))
    out.append("<details><summary>Every test question, per model</summary>")
    rows = []
    for q in ordered[0][1]["answers"]["per_question"]:
        rows.append([q["question"], q["kind"]] + [answers[n].get(q["id"], {}).get("f1") for n, _ in ordered])
    out.append(table(["question", "kind"] + [f"F1 {LABELS.get(n, n)}" for n, _ in ordered], rows, set(range(2, 2 + len(ordered)))))
    out.append("</details></section>")
    return "".join(out)
