"""`loopengt validate FILE...`"""

from __future__ import annotations

import json

import typer

from loopengt.cli.output import console, err_console
from loopengt.errors import EXIT_BAD_INPUT


def validate(
    files: list[str] = typer.Argument(..., help="LoopSpec YAML files.", metavar="FILE"),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
) -> None:
    """Validate LoopSpec files; report every problem as FILE:LINE:COL: field: message."""
    from loopengt.spec import validate_files

    results = validate_files(files)
    if as_json:
        payload = [
            {"file": r.path, "ok": r.ok, "problems": list(r.problems), "warnings": list(r.warnings)}
            for r in results
        ]
        console.print_json(json.dumps(payload))
    for result in results:
        if result.spec is not None and not as_json:
            spec = result.spec
            console.print(
                f"[green]✓[/] {result.path}: {spec.name} ({spec.pattern}, "
                f"{len(spec.agents)} agents, {len(spec.steps)} steps)"
            )
        for line in (*result.problems, *([] if as_json else result.warnings)):
            err_console.print(line, markup=False)
    if not all(r.ok for r in results):
        raise typer.Exit(EXIT_BAD_INPUT)


def register(app: typer.Typer) -> None:
    app.command()(validate)
