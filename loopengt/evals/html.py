"""A dataset report as one self-contained HTML page: the cases with their scores and, given a
baseline, a chart of each case now against then (the judge's score when the cases were
judged, else latency) and the regressions."""

from __future__ import annotations

from typing import Any

from loopengt.evals.baseline import Regression
from loopengt.evals.report import failures
from loopengt.status import StepStatus
from loopengt.tracing.html import COLOURS, esc, page

PASS, FAIL = COLOURS[StepStatus.OK], COLOURS[StepStatus.FAILED]
NOW, THEN = "#1565c0", "#b0bec5"


def report_html(
    report: dict[str, Any],
    baseline: dict[str, Any] | None = None,
    regressions: list[Regression] | None = None,
) -> str:
    s = report["summary"]
    score = "" if s.get("mean_score") is None else f" · mean score {s['mean_score']:.2f}"
    parts = [
        f"<h1>Eval: {esc(report['spec'])}</h1>",
        f'<p class="meta">dataset {esc(report["dataset"])} · {s["cases"]} cases · '
        f'<b style="color:{PASS}">{s["passed"]} passed</b> · '
        f'<b style="color:{FAIL if s["failed"] else PASS}">{s["failed"]} failed</b>{esc(score)} '
        f"· cost ${s['cost_usd']:.4f} · wall {s['wall_s']:.1f}s</p>",
    ]
    if regressions is not None:
        parts.append("<h2>Against the baseline</h2>")
        if regressions:
            items = "".join(f"<li><b>{esc(r.case)}</b>: {esc(r.why)}</li>" for r in regressions)
            parts.append(f'<ul style="color:{FAIL}">{items}</ul>')
        else:
            parts.append(f'<p style="color:{PASS}">No regressions.</p>')
    if baseline is not None:
        parts.append(chart(report, baseline))
    parts += ["<h2>Cases</h2>", cases_table(report)]
    return page(f"eval {report['spec']}", "\n".join(parts))


def cases_table(report: dict[str, Any]) -> str:
    rows = []
    for case in report["cases"]:
        m = case.get("metrics") or {}
        ok = case["passed"]
        score = "—" if case.get("score") is None else f"{case['score']:.2f}"
        rows.append(
            f'<tr data-step="{esc(case["id"])}"><td>{esc(case["id"])}</td>'
            f'<td style="color:{PASS if ok else FAIL}">{"pass" if ok else "FAIL"}</td>'
            f"<td>{esc(case['status'])}</td><td>{score}</td>"
            f"<td>{m.get('latency_s', 0):.2f}s</td><td>${m.get('cost_usd', 0):.4f}</td>"
            f"<td>{esc('; '.join(failures(case)))}</td><td><code>{esc(case.get('run_id'))}</code>"
            "</td></tr>"
        )
    header = (
        "<tr><th>case</th><th>result</th><th>status</th><th>score</th><th>latency</th>"
        "<th>cost</th><th>why</th><th>run</th></tr>"
    )
    return f"<table>{header}{''.join(rows)}</table>"


def chart(report: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Two bars per case, then (grey) and now (blue): scores when judged, else latency."""
    before = {c["id"]: c for c in baseline.get("cases", []) if isinstance(c, dict) and "id" in c}
    cases = report["cases"]
    judged = any(c.get("score") is not None for c in cases)

    def value(case: dict[str, Any] | None) -> float:
        if case is None:
            return 0.0
        if judged:
            return float(case.get("score") or 0.0)
        return float((case.get("metrics") or {}).get("latency_s") or 0.0)

    top = max([value(c) for c in cases] + [value(before.get(c["id"])) for c in cases] + [1e-9])
    label = "judge score" if judged else "latency (s)"
    row, bar_w, height = 28, 640, 24 + len(cases) * 28
    bars = []
    for i, case in enumerate(cases):
        y = 20 + i * row
        then, now = value(before.get(case["id"])), value(case)
        bars.append(
            f'<text x="0" y="{y + 14}">{esc(case["id"])}</text>'
            f'<rect x="160" y="{y}" width="{then / top * bar_w:.1f}" height="10" fill="{THEN}">'
            f"<title>baseline: {then:.3g}</title></rect>"
            f'<rect x="160" y="{y + 11}" width="{now / top * bar_w:.1f}" height="10" '
            f'fill="{NOW}"><title>now: {now:.3g}</title></rect>'
        )
    key = (
        f'<text x="160" y="12" fill="#555">{label}: <tspan fill="{THEN}">■ baseline</tspan> '
        f'<tspan fill="{NOW}">■ now</tspan></text>'
    )
    return (
        f'<svg viewBox="0 0 840 {height}" width="840" style="max-width:100%" role="img" '
        f'aria-label="chart">{key}{"".join(bars)}</svg>'
    )
