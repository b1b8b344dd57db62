"""A dataset report on disk: JSON (what `--baseline` reads), Markdown and HTML beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loopengt.errors import UserInputError
from loopengt.evals.baseline import Regression
from loopengt.serialization import write_atomically


def write_report(
    report: dict[str, Any],
    path: Path,
    regressions: list[Regression] | None = None,
    baseline: dict[str, Any] | None = None,
) -> list[Path]:
    """``path`` (JSON) and the same name with ``.md`` and ``.html``; the paths written."""
    from loopengt.evals.html import report_html

    texts = {
        path: json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
        path.with_suffix(".md"): to_markdown(report, regressions),
        path.with_suffix(".html"): report_html(report, baseline, regressions),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, text in texts.items():
            write_atomically(target, text)
    except OSError as exc:
        raise UserInputError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    return list(texts)


def to_markdown(report: dict[str, Any], regressions: list[Regression] | None = None) -> str:
    summary = report["summary"]
    score = summary.get("mean_score")
    out = [
        f"# Eval: {report['spec']}",
        "",
        f"Dataset `{report['dataset']}` · {summary['cases']} cases · "
        f"**{summary['passed']} passed**, {summary['failed']} failed"
        + (f" · mean score {score:.2f}" if score is not None else "")
        + f" · cost ${summary['cost_usd']:.4f} · wall {summary['wall_s']:.1f}s",
        "",
    ]
    if regressions is not None:
        if regressions:
            out += ["## Regressions against the baseline", ""]
            out += [f"- **{r.case}**: {r.why}" for r in regressions] + [""]
        else:
            out += ["No regressions against the baseline.", ""]
    out += [
        "| case | result | status | score | latency | cost | tokens | run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        metrics = case.get("metrics") or {}
        tokens = (metrics.get("input_tokens") or 0) + (metrics.get("output_tokens") or 0)
        score_text = "—" if case.get("score") is None else f"{case['score']:.2f}"
        out.append(
            f"| {case['id']} | {'pass' if case['passed'] else '**FAIL**'} | {case['status']} "
            f"| {score_text} | {metrics.get('latency_s', 0):.2f}s "
            f"| ${metrics.get('cost_usd', 0):.4f} | {tokens} | `{case.get('run_id') or '—'}` |"
        )
    failing = [c for c in report["cases"] if not c["passed"]]
    if failing:
        out += ["", "## Failures", ""]
        for case in failing:
            out.append(f"- **{case['id']}**: " + "; ".join(failures(case)))
    judged = [c for c in report["cases"] if c.get("judgements")]
    if judged:
        out += ["", "## Judge", ""]
        for case in judged:
            for j in case["judgements"]:
                out.append(f"- {case['id']} · {j['key']}: {j['score']} — {j['comment']}")
    return "\n".join(out) + "\n"


def failures(case: dict[str, Any]) -> list[str]:
    """Why a case (as in a report) failed, one reason per failed check or error."""
    reasons = [
        f"{c['name']}: {c['detail']}" if c.get("detail") else c["name"]
        for c in case.get("checks", [])
        if not c.get("passed")
    ]
    return reasons + [case[k] for k in ("error", "judge_error") if case.get(k)]
