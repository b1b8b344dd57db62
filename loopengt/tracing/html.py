"""A run's trace as one self-contained HTML page: no network, no CDN, nothing to install.

The page shows the compiled graph with each node coloured by what happened to it, a
timeline of steps and model calls (parallel branches in lanes side by side), and a table of
tokens and cost per step. Graph and timeline are SVG drawn here — a small layered layout is
all a loop's graph needs — so the file opens the same anywhere, offline. `page` and `esc`
are shared with the dataset report (`loopengt.evals.html`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from loopengt.status import RunStatus, StepStatus
from loopengt.tracing.events import MODEL_CALL, Trace
from loopengt.tracing.views import StepView, fmt_cost, fmt_duration, step_views

COLOURS: dict[str, str] = {
    StepStatus.OK: "#2e7d32",
    StepStatus.FAILED: "#c62828",
    StepStatus.TIMED_OUT: "#ef6c00",
    StepStatus.SKIPPED: "#9e9e9e",
    StepStatus.REJECTED: "#6a1b9a",
    StepStatus.WAITING: "#f9a825",
    StepStatus.INTERRUPTED: "#1565c0",
    StepStatus.RUNNING: "#1565c0",
}
NOT_RUN = "#eceff1"
RUN_COLOURS: dict[str, str] = {
    RunStatus.COMPLETED: COLOURS[StepStatus.OK],
    RunStatus.FAILED: COLOURS[StepStatus.FAILED],
    RunStatus.STOPPED: COLOURS[StepStatus.TIMED_OUT],
    RunStatus.REJECTED: COLOURS[StepStatus.REJECTED],
    RunStatus.WAITING_APPROVAL: COLOURS[StepStatus.WAITING],
    RunStatus.INTERRUPTED: COLOURS[StepStatus.INTERRUPTED],
    RunStatus.RUNNING: COLOURS[StepStatus.RUNNING],
}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.meta{color:#555}.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #e0e0e0;vertical-align:top}th{background:#fafafa}
tr.sel td{background:#fff8e1}svg text{font:12px system-ui,sans-serif}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;
width:10px;height:10px;margin-right:4px;border-radius:2px}g.sel rect{stroke:#000;stroke-width:2}
"""

# Clicking a step's row, node or bar marks it everywhere; the only script on the page.
SCRIPT = """
document.querySelectorAll('[data-step]').forEach(function (el) {
  el.addEventListener('click', function () {
    var step = el.getAttribute('data-step');
    document.querySelectorAll('.sel').forEach(function (s) { s.classList.remove('sel'); });
    document.querySelectorAll('[data-step="' + step + '"]').forEach(function (s) {
      s.classList.add('sel');
    });
  });
});
document.body.setAttribute('data-ready', '1');
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, script: str = SCRIPT) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{body}\n"
        f"<script>{script}</script></body></html>\n"
    )


def colour(status: str | None) -> str:
    return COLOURS.get(status, NOT_RUN) if status else NOT_RUN


def run_colour(status: str) -> str:
    return RUN_COLOURS.get(status, "#546e7a")


def legend() -> str:
    items = "".join(
        f'<span><i style="background:{c}"></i>{esc(s.replace("_", " "))}</span>'
        for s, c in COLOURS.items()
        if s != StepStatus.RUNNING
    )
    return f'<p class="legend">{items}<span><i style="background:{NOT_RUN}"></i>not run</span></p>'


# -- the trace page ----------------------------------------------------------------------------


def trace_html(trace: Trace, graph: Any = None) -> str:
    """The page for ``trace``; ``graph``, the compiled graph's drawable graph
    (``compiled.get_graph()``), adds the coloured graph."""
    steps = step_views(trace)
    status = str(trace.get("status") or "running")
    usage = trace.get("usage") or {}
    head = (
        f"<h1>{esc(trace.get('spec') or 'loop')} · run {esc(trace.get('run_id'))}</h1>"
        f'<p class="meta"><span class="badge" style="background:{run_colour(status)}">'
        f"{esc(status)}</span> {esc(trace.get('stop_reason') or '')} · "
        f"{fmt_duration(trace.get('duration_s'))} · "
        f"{int(usage.get('total_tokens') or 0)} tokens · {fmt_cost(usage.get('cost_usd'))}</p>"
    )
    parts = [head]
    if graph is not None:
        last = {s.node: s.status for s in steps}
        parts += ["<h2>Graph</h2>", legend(), graph_svg(graph, last)]
    parts += ["<h2>Timeline</h2>", timeline_svg(steps), "<h2>Steps</h2>", steps_table(steps)]
    return page(f"{trace.get('spec')} {trace.get('run_id')}", "\n".join(parts))


def steps_table(steps: Sequence[StepView]) -> str:
    rows = []
    for s in steps:
        tokens_in, tokens_out = s.tokens
        tools = len(s.calls("tool_call"))
        why = s.error or ""
        rows.append(
            f'<tr data-step="{esc(s.node)}"><td>{s.number}</td><td>{esc(s.node)}</td>'
            f'<td>{esc(s.agent or "")}</td><td style="color:{colour(s.status)}">'
            f"{esc(s.status)}</td><td>{fmt_duration(s.duration)}</td>"
            f"<td>{tokens_in} / {tokens_out}</td><td>{fmt_cost(s.cost)}</td>"
            f"<td>{len(s.calls())}</td><td>{tools}</td><td>{esc(why)}</td></tr>"
        )
    header = (
        "<tr><th>#</th><th>step</th><th>agent</th><th>status</th><th>time</th>"
        "<th>tokens in / out</th><th>cost</th><th>model calls</th><th>tool calls</th>"
        "<th>error</th></tr>"
    )
    return f"<table>{header}{''.join(rows)}</table>"


# -- timeline ------------------------------------------------------------------------------------

WIDTH, LANE, LABEL = 1100, 34, 0


def timeline_svg(steps: Sequence[StepView]) -> str:
    """Steps as bars on a time axis; a step that overlaps another goes in its own lane, so
    parallel branches sit side by side. Model calls are the thin bars under a step."""
    if not steps:
        return "<p>No steps ran.</p>"
    t0 = min(s.start for s in steps)
    t1 = max(max(s.end or s.start, s.start) for s in steps)
    span = max(t1 - t0, 1e-3)
    scale = (WIDTH - 20) / span
    lanes: list[float] = []
    bars = []
    for s in steps:
        end = s.end if s.end is not None else t1
        lane = next((i for i, free in enumerate(lanes) if free <= s.start + 1e-9), len(lanes))
        if lane == len(lanes):
            lanes.append(end)
        lanes[lane] = end
        x, y = 10 + (s.start - t0) * scale, 24 + lane * LANE
        w = max((end - s.start) * scale, 3)
        tip = f"{s.node}: {s.status}, {fmt_duration(s.duration)}"
        calls = "".join(
            f'<rect x="{10 + (c["ts"] - (c.get("latency_s") or 0) - t0) * scale:.1f}" '
            f'y="{y + 20}" width="{max((c.get("latency_s") or 0) * scale, 2):.1f}" height="5" '
            f'fill="#455a64"><title>model call {esc(c.get("model") or "")}: '
            f"{fmt_duration(c.get('latency_s'))}</title></rect>"
            for c in s.calls(MODEL_CALL)
        )
        bars.append(
            f'<g data-step="{esc(s.node)}"><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
            f'height="18" rx="3" fill="{colour(s.status)}"><title>{esc(tip)}</title></rect>'
            f'<text x="{x + 4:.1f}" y="{y + 13}" fill="#fff">{esc(s.node)}</text>{calls}</g>'
        )
    height = 34 + len(lanes) * LANE
    ticks = "".join(
        f'<text x="{10 + i * (WIDTH - 20) / 4:.0f}" y="14" fill="#777">'
        f"{fmt_duration(span * i / 4)}</text>"
        for i in range(5)
    )
    return (
        f'<svg viewBox="0 0 {WIDTH + 60} {height}" width="100%" role="img" '
        f'aria-label="timeline">{ticks}{"".join(bars)}</svg>'
    )


# -- graph ---------------------------------------------------------------------------------------

NODE_W, NODE_H, GAP_X, GAP_Y = 150, 34, 30, 56


def graph_svg(graph: Any, statuses: dict[str, str]) -> str:
    """LangGraph's drawable graph, laid out in layers from ``__start__``: edges that go
    back (loops) are drawn dashed along the side. Steps are coloured by ``statuses``."""
    nodes = list(graph.nodes)
    edges = [(e.source, e.target, bool(e.conditional)) for e in graph.edges]
    layer = _layers(nodes, [(a, b) for a, b, _ in edges])
    rows: dict[int, list[str]] = {}
    for node in nodes:
        rows.setdefault(layer[node], []).append(node)
    widest = max(len(r) for r in rows.values())
    width = max(widest * (NODE_W + GAP_X) + GAP_X, 300)
    pos: dict[str, tuple[float, float]] = {}
    for depth, row in rows.items():
        start = (width - len(row) * (NODE_W + GAP_X) + GAP_X) / 2
        for i, node in enumerate(row):
            pos[node] = (start + i * (NODE_W + GAP_X), 20 + depth * (NODE_H + GAP_Y))
    lines = [_edge(pos[a], pos[b], dashed, layer[b] <= layer[a]) for a, b, dashed in edges]
    boxes = [_node(node, pos[node], statuses.get(node)) for node in nodes]
    height = 40 + (max(rows) + 1) * (NODE_H + GAP_Y)
    marker = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#607d8b"/></marker></defs>'
    )
    return (
        f'<svg viewBox="0 0 {width + 80} {height}" width="{width + 80}" '
        f'style="max-width:100%" role="img" aria-label="graph">'
        f"{marker}{''.join(lines)}{''.join(boxes)}</svg>"
    )


def _layers(nodes: Iterable[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth of each node from ``__start__``, ignoring edges that close a loop."""
    out: dict[str, list[str]] = {}
    for a, b in edges:
        out.setdefault(a, []).append(b)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(node: str) -> None:  # depth-first: an edge to a node on the stack is a loop
        state[node] = 1
        for nxt in out.get(node, []):
            if state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                visit(nxt)
        state[node] = 2

    names = list(nodes)
    for root in ["__start__", *names]:
        if root in names and root not in state:
            visit(root)
    depth = dict.fromkeys(names, 0)
    for _ in names:  # relax forward edges until stable (at most one pass per node)
        changed = False
        for a, b in edges:
            if (a, b) not in back and a in depth and b in depth and depth[b] < depth[a] + 1:
                depth[b], changed = depth[a] + 1, True
        if not changed:
            break
    return depth


def _node(node: str, at: tuple[float, float], status: str | None) -> str:
    x, y = at
    if node in ("__start__", "__end__"):
        label = "start" if node == "__start__" else "end"
        return (
            f'<g><rect x="{x + NODE_W / 2 - 30}" y="{y + 4}" width="60" height="{NODE_H - 8}" '
            f'rx="13" fill="#37474f"/><text x="{x + NODE_W / 2}" y="{y + NODE_H / 2 + 4}" '
            f'text-anchor="middle" fill="#fff">{label}</text></g>'
        )
    fill = colour(status)
    ink = "#222" if fill == NOT_RUN else "#fff"
    tip = f"{node}: {status or 'not run'}"
    return (
        f'<g data-step="{esc(node)}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" '
        f'rx="6" fill="{fill}" stroke="#90a4ae"><title>{esc(tip)}</title></rect>'
        f'<text x="{x + NODE_W / 2}" y="{y + NODE_H / 2 + 4}" text-anchor="middle" '
        f'fill="{ink}">{esc(node)}</text></g>'
    )


def _edge(a: tuple[float, float], b: tuple[float, float], dashed: bool, back: bool) -> str:
    style = ' stroke-dasharray="5,4"' if dashed else ""
    if back:  # a loop: out of the right side, up, into the right side of the target
        x1, y1, x2, y2 = a[0] + NODE_W, a[1] + NODE_H / 2, b[0] + NODE_W, b[1] + NODE_H / 2
        bend = max(x1, x2) + 40
        path = f"M{x1},{y1} C{bend},{y1} {bend},{y2} {x2 + 2},{y2}"
    else:
        x1, y1 = a[0] + NODE_W / 2, a[1] + NODE_H
        x2, y2 = b[0] + NODE_W / 2, b[1]
        path = f"M{x1},{y1} C{x1},{y1 + 25} {x2},{y2 - 25} {x2},{y2 - 2}"
    return (
        f'<path d="{path}" fill="none" stroke="#607d8b" stroke-width="1.4"{style} '
        f'marker-end="url(#arrow)"/>'
    )
