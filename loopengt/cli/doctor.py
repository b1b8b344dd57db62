"""`loopengt doctor [--offline] [--json]`"""

from __future__ import annotations

import json

import typer

from loopengt.cli.output import console
from loopengt.errors import EXIT_RUN_FAILED

_MARK = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "skip": "[dim]–[/]"}  # noqa: RUF001


def doctor(
    offline: bool = typer.Option(False, "--offline", help="Make no network call (models)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="Also check this model (provider:model). Repeatable."
    ),
    timeout: float = typer.Option(
        10.0, "--timeout", min=0.1, help="Seconds each model has to answer one token."
    ),
) -> None:
    """Check Python, packages, config, models, the database, plugins and IDE configs;
    print a fix for every failure. Exit 1 if anything required fails."""
    from rich.table import Table
    from rich.text import Text

    from loopengt.doctor import as_json as payload
    from loopengt.doctor import diagnose, failed
    from loopengt.project import find_project

    checks = diagnose(find_project(), offline=offline, models=model, timeout=timeout)
    if as_json:
        console.print_json(json.dumps(payload(checks)))
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        for check in checks:
            table.add_row(_MARK[check.status], Text(check.name), Text(check.detail))
            if check.status == "fail" and check.hint:
                table.add_row("", "", Text(f"→ {check.hint}", style="yellow"))
        console.print(table)
    if failed(checks):
        raise typer.Exit(EXIT_RUN_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
