"""How `loopengt eval` shows a run's eval, a dataset's progress and its report."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loopengt.cli.output import console, err_console


def print_eval(result: dict[str, Any]) -> None:
    from loopengt.tracing.render import status_text

    m = result["metrics"]
    console.print(f"[bold]eval[/] {result['run_id']}  {status_text(m['status'])}", highlight=False)
    if m.get("stop_reason"):
        console.print(f"stop reason: {m['stop_reason']}", markup=False)
    rate = m.get("gate_pass_rate")
    rows = [
        ("steps", f"{m['steps_completed']}/{m['steps_total']} completed · {m['turns']} turns"),
        ("latency", f"{m['latency_s']:.2f}s"),
        (
            "tokens",
            f"{m['input_tokens'] + m['output_tokens']} (in {m['input_tokens']}, "
            f"out {m['output_tokens']}) · {m['model_calls']} model calls",
        ),
        ("cost", f"${m['cost_usd']:.4f}"),
        ("gates", "none" if rate is None else f"{m['gates_passed']}/{m['gates']} passed"),
        ("retries", str(m["retries"])),
        ("tools", f"{m['tool_calls']} calls, {m['tool_errors']} errors"),
    ]
    table = Table(box=None, show_header=False, pad_edge=False)
    for name, value in rows:
        table.add_row(f"[dim]{name}[/]", value)
    for step, seconds in m["step_latency_s"].items():
        table.add_row(f"[dim]  {step}[/]", f"{seconds:.2f}s")
    console.print(table)
    if result.get("judge_error"):
        err_console.print(f"[yellow]{result['judge_error']}[/]", highlight=False)
    for j in result.get("judgements") or []:
        console.print(f"[bold]{j['key']}[/] {float(j['score']):.2f}  ", end="", highlight=False)
        console.print(j["comment"], markup=False)
    if result.get("score") is not None:
        console.print(f"score: {result['score']:.2f} (judge: {result['judge_model']})")


class CaseProgress:
    """A progress bar on stderr while the cases run (nothing when quiet or not a terminal)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.progress = Progress(
            TextColumn("eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
            transient=True,
        )
        self.task = self.progress.add_task("cases", total=None, last="")

    def __enter__(self) -> CaseProgress:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def done(self, case: Any) -> None:
        mark = "✓" if case.passed else "✗"
        self.progress.update(self.task, advance=1, last=f"{mark} {case.id}")


def print_report(report: dict[str, Any], regressions: Any, written: list[Path]) -> None:
    from loopengt.evals.report import failures

    table = Table("case", "result", "status", "score", "latency", "cost", "why", box=None)
    for case in report["cases"]:
        m = case.get("metrics") or {}
        table.add_row(
            case["id"],
            "[green]pass[/]" if case["passed"] else "[red]FAIL[/]",
            case["status"],
            "—" if case.get("score") is None else f"{case['score']:.2f}",
            f"{m.get('latency_s', 0):.2f}s",
            f"${m.get('cost_usd', 0):.4f}",
            "; ".join(failures(case))[:80],
        )
    console.print(table)
    s = report["summary"]
    score = "" if s["mean_score"] is None else f" · mean score {s['mean_score']:.2f}"
    console.print(
        f"{s['passed']}/{s['cases']} passed{score} · cost ${s['cost_usd']:.4f} · "
        f"wall {s['wall_s']:.1f}s",
        highlight=False,
    )
    console.print("report: " + ", ".join(str(p) for p in written), markup=False)
    if regressions is None:
        return
    if not regressions:
        console.print("[green]no regressions[/] against the baseline")
        return
    err_console.print(f"[red]{len(regressions)} regression(s)[/] against the baseline:")
    for r in regressions:
        err_console.print(f"  {r.line()}", markup=False)
