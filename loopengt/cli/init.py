"""`loopengt init`"""

from __future__ import annotations

from pathlib import Path

import typer

from loopengt.cli.output import console


def init(
    directory: Path = typer.Argument(Path("."), help="Project directory."),
) -> None:
    """Create .loopengt/ (config.toml, prompts/, templates/) without overwriting anything."""
    from loopengt.project import init_project

    report = init_project(directory)
    for path in report.created:
        console.print(f"[green]created[/] {path}")
    for path in report.kept:
        console.print(f"[dim]exists[/]  {path}")


def register(app: typer.Typer) -> None:
    app.command()(init)
