"""`loopengt runs [--status S] [--json]` and `loopengt runs show RUN_ID`."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from loopengt.cli.output import console
from loopengt.cli.run import CHECKPOINTER_HELP, print_outputs, print_run_head

runs_app = typer.Typer(
    help="The run index: every run with its status, steps, tokens and cost.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@runs_app.callback()
def runs(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", "-s", help="Only runs with this status."),
    checkpointer: str | None = typer.Option(None, "--checkpointer", help=CHECKPOINTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from loopengt.runs.engine import list_runs
    from loopengt.tracing.render import status_text

    records = list_runs(status=status, checkpointer=checkpointer)
    if as_json:
        console.out(json.dumps([r.summary() for r in records], default=str))
        return
    if not records:
        console.print("no runs yet: start one with `loopengt run FILE`", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    columns = (
        "run id",
        "spec",
        "status",
        "steps",
        "tokens",
        "cost",
        "score",
        "started",
        "duration",
    )
    for column in columns:
        table.add_column(column, no_wrap=column in ("run id", "status", "started"))
    for r in records:
        table.add_row(
            r.run_id,
            r.spec_name,
            status_text(r.status),
            str(r.steps_done),
            str(r.tokens),
            f"${r.cost_usd:.4f}",
            "-" if r.score is None else f"{r.score:.2f}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at)),
            "-" if r.duration_s is None else f"{r.duration_s:.1f}s",
        )
    # piped output is not cut to 80 columns: the run id must stay copyable
    out = console if console.is_terminal else Console(width=200, highlight=False)
    out.print(table)


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="The run to show."),
    checkpointer: str | None = typer.Option(None, "--checkpointer", help=CHECKPOINTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    """A run's index entry and its final (or latest) state."""
    from loopengt.runs.engine import get_run

    record, values = get_run(run_id, checkpointer=checkpointer)
    state = _plain_state(values)
    if as_json:
        console.out(json.dumps({**record.summary(), "state": state}, default=str))
        return
    print_run_head(record.run_id, record.status, record.stop_reason)
    console.print(f"spec: {record.spec_name} ({record.spec_path})", markup=False)
    print_outputs(state.get("outputs") or {})
    console.print(
        f"steps: {record.steps_done} · tokens: {record.tokens} · cost: ${record.cost_usd:.4f}",
        highlight=False,
    )
    if record.trace_path:
        console.print(f"trace: {record.trace_path}", markup=False)
    if record.score is not None:
        console.print(f"eval score: {record.score:.2f} (`loopengt eval {record.run_id}`)")


def _plain_state(values: dict[str, Any]) -> dict[str, Any]:
    """The state without LangChain message objects, which JSON cannot hold."""
    out = {k: v for k, v in values.items() if k != "messages"}
    out["messages"] = len(values.get("messages") or [])
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
