"""Report section from results/lineage.json: the stage graph (inline SVG) and every artifact's
hash and maker."""

from __future__ import annotations

from collections import defaultdict

from .report_html import esc, num, table


def job_edges(data: dict) -> set[tuple[str, str]]:
    """(producer job, consumer job) pairs through data artifacts; source files count as one node."""
    made_by = {p: a["made_by"] for p, a in data["artifacts"].items() if a.get("made_by")}
    pairs = set()
    for edge in data["edges"]:
        if edge["role"] != "data":
            continue
        source = made_by.get(edge["from"], "raw files")
        pairs.add((source, edge["job"]))
    return pairs


def stage_graph_svg(pairs: set[tuple[str, str]], extra: list[tuple[str, str]] = ()) -> str:
    """Jobs in columns by depth (longest path from the sources), arrows between them."""
    pairs = set(pairs) | set(extra)
    nodes = sorted({n for p in pairs for n in p})
    parents = defaultdict(set)
    for a, b in pairs:
        parents[b].add(a)
    depth: dict[str, int] = {}

    def level(node, seen=()):
        if node not in depth:
            depth[node] = (
                0 if not parents[node] or node in seen else 1 + max(level(p, seen + (node,)) for p in parents[node])
            )
        return depth[node]

    columns = defaultdict(list)
    for node in nodes:
        columns[level(node)].append(node)
    box_w, box_h, gap_x, gap_y = 128, 26, 28, 14
    height = max(len(c) for c in columns.values()) * (box_h + gap_y) + 20
    width = len(columns) * (box_w + gap_x) + 20
    where = {}
    for col, members in columns.items():
        for row, node in enumerate(sorted(members)):
            where[node] = (10 + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" style="max-width:100%;height:auto" role="img" aria-label="stage graph">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for a, b in sorted(pairs):
        (x1, y1), (x2, y2) = where[a], where[b]
        parts.append(
            f'<line x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" y2="{y2 + box_h / 2}" stroke="#888" marker-end="url(#arrow)"/>'
        )
    for node, (x, y) in where.items():
        fill = "#f2f2f2" if node == "raw files" else "#e8f0fb"
        parts.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="5" fill="{fill}" stroke="#456"/>')
        parts.append(f'<text x="{x + box_w / 2}" y="{y + 17}" font-size="12" text-anchor="middle">{esc(node)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def lineage_section(data: dict) -> str:
    artifacts = data["artifacts"]
    out = ["<section><h2>Lineage</h2>"]
    out.append(
        "<p>Every job wrote a provenance entry (<code>results/lineage/&lt;job&gt;.json</code>) when its outputs were complete: "
        "the outputs' sha256, the inputs with the sha256 they had when read, the params, the code and the package versions. "
        "<code>python scripts/cli/lineage.py verify</code> recomputes the hashes and checks the chain; "
        "<code>python scripts/cli/lineage.py show results/adapters/qlora</code> prints an artifact's ancestry down to the raw files.</p>"
    )
    pairs = job_edges(data)
    producers = {a for a, _ in pairs}
    sinks = [(job, "report") for job in sorted(data["jobs"]) if job not in producers and job != "lineage"]
    out.append("<h3>Stage graph</h3>" + stage_graph_svg(pairs, sinks))
    rows = []
    for path, a in sorted(
        artifacts.items(), key=lambda kv: (kv[1].get("made_by") is None, kv[1].get("role", ""), kv[0])
    ):
        if a.get("role") == "lineage":
            continue
        rows.append(
            [path, a["made_by"] or a.get("role", "source"), a["kind"], a["bytes"], a["sha256"][:16], a.get("ended", "")]
        )
    made = [r for r in rows if r[1] not in ("source", "code")]
    sources = [r for r in rows if r[1] in ("source", "code")]
    out.append(
        "<h3>Artifacts made by the pipeline</h3>"
        + table(["artifact", "made by", "kind", "bytes", "sha256 (first 16)", "finished"], made, {3})
    )
    out.append(
        f"<details><summary>Source and code files read ({num(len(sources))})</summary>"
        + table(["file", "role", "kind", "bytes", "sha256 (first 16)", ""], sources, {3})
        + "</details>"
    )
    jobs = [
        [
            name,
            j["rule"],
            j["seconds"],
            j["started"],
            j["versions"].get("mlx"),
            j["versions"].get("mlx-lm"),
            j["versions"].get("snakemake"),
        ]
        for name, j in sorted(data["jobs"].items(), key=lambda kv: kv[1]["started"])
    ]
    out.append("<h3>Jobs</h3>" + table(["job", "rule", "seconds", "started", "mlx", "mlx-lm", "snakemake"], jobs, {2}))
    out.append("</section>")
    return "".join(out)
