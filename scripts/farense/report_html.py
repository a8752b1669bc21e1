"""The HTML report: one self-contained page (inline styles and SVG, no network).

Every text that can come from the corpus or the config goes through `esc`, so a `<script>`
in a raw file shows as text.
"""

from __future__ import annotations

import html
import platform
from datetime import datetime, timezone

import yaml


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1040px;margin:0 auto;padding:24px}
header{background:#111;color:#fff;padding:24px}
header h1{margin:0 auto;max-width:1040px;font-size:26px}
header p{margin:6px auto 0;max-width:1040px;color:#ccc}
section{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:16px 20px;margin:18px 0}
h2{margin-top:0;font-size:20px;border-bottom:2px solid #111;padding-bottom:4px}
table{border-collapse:collapse;width:100%;font-size:14px;margin:8px 0}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 150px;border:1px solid #ddd;border-radius:6px;padding:10px;background:#fcfcfc}
.card b{display:block;font-size:22px}
.ok{color:#0a7d27;font-weight:bold}.bad{color:#b00020;font-weight:bold}
pre{background:#f5f5f5;padding:10px;overflow-x:auto;font-size:12px}
small{color:#666}
.scroll{overflow-x:auto}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def num(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}".replace(",", " ")
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    return esc(value)


def table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{num(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def cards(items: list[tuple[str, object]]) -> str:
    return (
        '<div class="cards">' + "".join(f'<div class="card"><b>{num(v)}</b>{esc(k)}</div>' for k, v in items) + "</div>"
    )


def histogram_svg(series: dict[str, dict], xlabel: str = "") -> str:
    """Step histograms, one per series ({name: {"edges": [...], "counts": [...]}}), drawn by line_chart_svg."""
    steps = {}
    for name, data in series.items():
        points = []
        for left, right, count in zip(data.get("edges", []), data.get("edges", [])[1:], data.get("counts", [])):
            points += [(left, count), (right, count)]
        steps[name] = points
    return line_chart_svg(steps, height=200, xlabel=xlabel, ylabel="records")


def versions() -> list[list[str]]:
    """The package versions the lineage records, as table rows."""
    from .provenance import versions as installed

    return [[package, version or "not installed"] for package, version in installed().items()]


def machine() -> str:
    """Cores and memory of the machine that built the report."""
    import os

    import psutil

    return f"{os.cpu_count()} logical cores, {psutil.virtual_memory().total / 2**30:.1f} GiB of memory"


def data_section(clean: dict, records: dict, split: dict) -> str:
    out = ["<section><h2>Data</h2>"]
    out.append(
        cards(
            [
                ("raw files seen", clean["files_seen"]),
                ("documents kept", clean["documents_written"]),
                ("files skipped", len(clean["files_skipped"])),
                ("records", records["records"]),
                ("conflicting questions", len(records["conflicts"])),
            ]
        )
    )
    out.append("<h3>Files read</h3>")
    rows = [
        [
            path,
            f["format"],
            f["encoding"],
            f["bytes"],
            f["chars_out"],
            f["paragraphs_kept"],
            f["exact_duplicates_dropped"] + f["near_duplicates_dropped"],
        ]
        for path, f in clean["files"].items()
    ]
    out.append(
        table(
            ["file", "format", "encoding", "bytes", "characters kept", "paragraphs", "duplicates dropped"],
            rows,
            {3, 4, 5, 6},
        )
    )
    if clean["files_skipped"]:
        out.append("<h3>Files skipped</h3>")
        out.append(table(["file", "reason"], [[s["path"], s["reason"]] for s in clean["files_skipped"]]))
    out.append("<h3>What cleaning changed</h3>")
    units = clean.get("step_units", {})
    out.append(table(["step", "count", "unit"], [[s, n, units.get(s, "")] for s, n in clean["steps"].items()], {1}))
    dedup = clean["dedup"]
    out.append(
        f"<p>Duplicate paragraphs dropped: {num(dedup['exact_paragraphs_dropped'])} exact, {num(dedup['near_paragraphs_dropped'])} near.</p>"
    )
    if dedup["examples"]:
        out.append(
            table(
                ["kind", "file", "duplicate of", "similarity", "paragraph starts"],
                [
                    [d["kind"], d["path"], d["duplicate_of"], d["similarity"], d["text_start"]]
                    for d in dedup["examples"][:20]
                ],
                {3},
            )
        )
    warnings = clean["warnings"] + records["warnings"]
    if warnings:
        out.append("<h3>Warnings</h3>")
        out.append(table(["file", "line", "message"], [[w["path"], w.get("line", ""), w["message"]] for w in warnings]))
    out.append("<h3>Records per split and kind</h3>")
    kinds = sorted({k for s in split["splits"].values() for k in s["by_kind"]})
    rows = [
        [name, s["records"], s["share"]] + [s["by_kind"].get(k, 0) for k in kinds]
        for name, s in split["splits"].items()
    ]
    out.append(table(["split", "records", "share"] + kinds, rows, set(range(1, 3 + len(kinds)))))
    out.append(
        f"<p>Format <b>{esc(split['format'])}</b>, seed {num(split['seed'])}; {num(split['groups'])} independent groups "
        f"(largest: {num(split['largest_group'])} records); {num(split['excluded_conflicting_records'])} conflicting records kept out.</p>"
    )
    out.append("<h3>Length of records (characters)</h3>")
    out.append(histogram_svg({name: s["chars_histogram"] for name, s in split["splits"].items()}, xlabel="characters"))
    rows = [
        [name] + [s["chars"].get(k, "") for k in ("min", "p50", "p90", "max")] + [s["words"].get("p50", "")]
        for name, s in split["splits"].items()
    ]
    out.append(table(["split", "min chars", "median", "p90", "max", "median words"], rows, {1, 2, 3, 4, 5}))
    leak = split["leakage_check"]
    verdict = '<span class="ok">passed</span>' if leak["passed"] else '<span class="bad">FAILED</span>'
    out.append(
        f"<h3>Leakage check: {verdict}</h3><p>Groups across splits: {num(leak['groups_across_splits'])}; exact duplicates across splits: "
        f"{num(leak['exact_duplicates_across_splits'])}; near-duplicate pairs across splits (similarity ≥ {num(leak['near_duplicate_threshold'])}): "
        f"{num(leak['near_duplicate_pairs_across_splits'])}.</p>"
    )
    out.append("<h3>Conflicting answers</h3>")
    if records["conflicts"]:
        rows = [[c["question"], a["answer"], a["origin"]] for c in records["conflicts"] for a in c["answers"]]
        out.append(table(["question", "answer", "source"], rows))
    else:
        out.append("<p>None found.</p>")
    out.append("</section>")
    return "".join(out)


def line_chart_svg(
    series: dict[str, list[tuple[float, float]]],
    width: int = 640,
    height: int = 220,
    xlabel: str = "",
    ylabel: str = "",
) -> str:
    """Lines through (x, y) points, one per series, inline SVG."""
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
    series = {k: v for k, v in series.items() if v}
    if not series:
        return "<p><small>no data</small></p>"
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad, w, h = 50, width - 60, height - 45
    x = lambda v: pad + (v - x0) / ((x1 - x0) or 1) * w  # noqa: E731
    y = lambda v: 10 + h - (v - y0) / ((y1 - y0) or 1) * h  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(
        f'<line x1="{pad}" y1="{10 + h}" x2="{pad + w}" y2="{10 + h}" stroke="#333"/><line x1="{pad}" y1="10" x2="{pad}" y2="{10 + h}" stroke="#333"/>'
    )
    parts.append(
        f'<text x="{pad}" y="{height - 8}" font-size="11">{num(x0)}</text><text x="{pad + w - 30}" y="{height - 8}" font-size="11">{num(x1)}</text>'
    )
    parts.append(f'<text x="{pad + w / 2 - 30}" y="{height - 8}" font-size="11">{esc(xlabel)}</text>')
    parts.append(
        f'<text x="2" y="18" font-size="11">{num(round(y1, 4))}</text><text x="2" y="{10 + h}" font-size="11">{num(round(y0, 4))}</text>'
    )
    parts.append(f'<text x="2" y="{10 + h / 2}" font-size="11">{esc(ylabel)}</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        parts.append(f'<text x="{pad + w - 150}" y="{22 + 14 * i}" font-size="12" fill="{colour}">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart_svg(
    rows: list[tuple[str, float | None, list | None]],
    width: int = 640,
    lo: float = 0.0,
    hi: float = 1.0,
    xlabel: str = "",
) -> str:
    """One horizontal row per (label, value, [low, high]): a dot at the value and a bar over its
    interval, on a shared axis from `lo` to `hi`, inline SVG."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return "<p><small>no data</small></p>"
    # the labels' column fits the longest label (12 px text: about 6.6 px a character); the plot
    # keeps its width
    left, right, step = max(200, int(6.6 * max(len(r[0]) for r in rows)) + 16), 20, 26
    width += left - 200
    height = 40 + step * len(rows)
    w = width - left - right
    x = lambda v: left + (min(max(v, lo), hi) - lo) / ((hi - lo) or 1) * w  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for tick in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="8" x2="{x(tick):.1f}" y2="{height - 26}" stroke="#ddd"/>'
            f'<text x="{x(tick) - 8:.1f}" y="{height - 12}" font-size="11">{num(tick)}</text>'
        )
    parts.append(f'<text x="{left + w / 2 - 40:.1f}" y="{height - 1}" font-size="11">{esc(xlabel)}</text>')
    for i, (label, value, ci) in enumerate(rows):
        cy = 22 + step * i
        parts.append(f'<text x="4" y="{cy + 4}" font-size="12">{esc(label)}</text>')
        if ci:
            parts.append(
                f'<line x1="{x(ci[0]):.1f}" y1="{cy}" x2="{x(ci[1]):.1f}" y2="{cy}" stroke="#1f77b4" stroke-width="3"/>'
            )
        parts.append(f'<circle cx="{x(value):.1f}" cy="{cy}" r="5" fill="#d62728"/>')
    parts.append("</svg>")
    return "".join(parts)


def base_description(base: dict, conversion: dict) -> str:
    """What the base model is (escaped HTML): the tiny one, a GGUF import (and what its
    "unquantized" weights then are), or the folder or hub id named in the config."""
    spec = base.get("base", {})
    if base.get("kind") == "tiny":
        text = "a tiny Mistral-architecture model built by the pipeline (seeded, tokenizer trained on the corpus, short pretraining on the training split)"
    elif base.get("kind") == "gguf":
        source = (
            f"the package {spec['package']} {spec['version']}"
            if spec.get("package")
            else "the file named in the config"
        )
        types = ", ".join(f"{n} {t}" for t, n in base["tensor_types"].items())
        text = (
            f"{esc(base['name'])} ({esc(base['architecture'])}, {num(base['parameters'])} parameters), imported from the GGUF file {esc(base['gguf'])} of {esc(source)} "
            f"(sha256 {base['gguf_sha256'][:16]}…; tensors: {esc(types)}), dequantized to {base['dtype']}. Its “unquantized” "
            f"weights, on which LoRA trains, are the dequantized values of a file that was already quantized at its source "
            f"({esc(base.get('file_type_name') or 'see the tensor types')}), so LoRA against QLoRA here measures what MLX's "
            f"int{conversion['bits']} conversion adds on top of that"
        )
    else:
        text = esc(conversion["base"]["path"])
    if base.get("parameters") and base.get("kind") != "gguf":
        text += f", {num(base['parameters'])} parameters"
    if spec.get("auto"):
        text += f". Chosen by model.base auto: {esc(spec['auto'])}"
    return text + "."


def model_section(
    conversion: dict, base: dict, trainings: dict[str, tuple], runs: dict[str, dict] | None = None
) -> str:
    """Base model, int4 conversion, and each adapter's training: its summary and curves
    (trainings: {adapter: (training_summary.json, metrics.csv rows)}) and what the run measured
    (runs: {job: run record}, results/runs/)."""
    runs = runs or {}
    out = ["<section><h2>Model and training</h2>"]
    out.append(f"<p>Base model: {base_description(base, conversion)}</p>")
    b, q = conversion["base"], conversion["int4"]
    out.append(
        table(
            ["model", "weights on disk (bytes)", "bits per weight", "parameters"],
            [
                ["base (unquantized)", b["weights_bytes"], b["bits_per_weight"], b["parameters"]],
                [
                    f"int{conversion['bits']} (group {conversion['group_size']})",
                    q["weights_bytes"],
                    q["bits_per_weight"],
                    q["parameters"],
                ],
            ],
            {1, 2, 3},
        )
    )
    out.append(f"<p>The int{conversion['bits']} model is {num(conversion['compression'])} times smaller on disk.</p>")
    rows = []
    for name, (summary, _) in trainings.items():
        run = runs.get(f"train_{name}") or {}
        rows.append(
            [
                name,
                summary["compute"],
                summary["preset"],
                summary["iterations"],
                summary["kept_step"],
                round(summary["initial_val_loss"], 4),
                round(summary["best_val_loss"], 4),
                "yes" if summary["stopped_early"] else "no",
                "—" if run.get("resumed_from") is None else f"step {run['resumed_from']}",
                run.get("tokens_per_second"),
                run.get("train_seconds"),
                run.get("peak_memory_gb"),
                summary["adapter_bytes"],
                round(100 * summary["padding_share"], 1),
            ]
        )
    out.append(
        table(
            [
                "adapter",
                "compute",
                "memory preset",
                "iterations",
                "kept step",
                "validation loss at step 0",
                "best validation loss",
                "stopped early",
                "resumed from checkpoint",
                "tokens/s",
                "training seconds",
                "peak memory (GB)",
                "adapter bytes",
                "padding %",
            ],
            rows,
            {3, 4, 5, 6, 9, 10, 11, 12, 13},
        )
    )
    for name, (summary, metrics) in trainings.items():
        train = [(m["step"], m["train_loss"]) for m in metrics if m["train_loss"] is not None]
        val = [(m["step"], m["val_loss"]) for m in metrics if m["val_loss"] is not None]
        out.append(
            f"<h3>{esc(name)}: loss</h3>"
            + line_chart_svg({"train": train, "validation": val}, xlabel="iteration", ylabel="loss")
        )
        lr = [(m["step"], m["learning_rate"]) for m in metrics if m["learning_rate"] is not None]
        out.append(
            f"<h3>{esc(name)}: learning rate</h3>"
            + line_chart_svg({"learning rate": lr}, height=160, xlabel="iteration")
        )
    blas = next((runs[f"train_{name}"].get("blas") for name in trainings if runs.get(f"train_{name}")), "")
    out.append(f"<p><small>BLAS: {esc(blas)}</small></p>")
    out.append("</section>")
    return "".join(out)


def build_report(
    clean: dict,
    records: dict,
    split: dict,
    config: dict,
    model: str = "",
    evaluation: str = "",
    lineage: str = "",
    headline: list | None = None,
    trained: str = "",
    knowledge: str = "",
) -> str:
    """The page: what the fine-tuned model knows, summary, evaluation sections, data, model and
    training, lineage, environment."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    splits = split["splits"]
    summary = (
        "<section><h2>Summary</h2>"
        f"<p>The raw corpus in <code>{esc(clean['raw_dir'])}</code> ({num(clean['files_seen'])} files) was cleaned into "
        f"{num(clean['documents_written'])} documents and turned into {num(split['records'])} training records in mlx-lm's "
        f"<b>{esc(split['format'])}</b> format: {num(splits['train']['records'])} for training, {num(splits['valid']['records'])} "
        f"for validation and {num(splits['test']['records'])} for testing, with "
        + (
            "no leakage between them"
            if split["leakage_check"]["passed"]
            else '<span class="bad">leakage between them</span>'
        )
        + f".{(' ' + trained) if trained else ''}</p>"
        + (cards(headline) if headline else "")
        + "</section>"
    )
    environment = (
        "<section><h2>Environment</h2>"
        + table(["package", "version"], versions())
        + f"<p>Python {esc(platform.python_version())} on {esc(platform.platform())} ({esc(platform.machine())}), {machine()}.</p>"
        + "<h3>Configuration used</h3><pre>"
        + esc(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
        + "</pre></section>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Farense QLoRA pipeline report</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Farense QLoRA pipeline: report</h1><p>Built {esc(made)}</p></header><main>"
        + knowledge
        + summary
        + evaluation
        + data_section(clean, records, split)
        + model
        + lineage
        + environment
        + "</main></body></html>"
    )
