"""`loopengt init [--ide NAME]... [--global]`"""

from __future__ import annotations

from pathlib import Path

import typer

from loopengt.cli.output import console

_STYLE = {"created": "green", "updated": "yellow", "unchanged": "dim"}


def init(
    directory: Path = typer.Argument(Path("."), help="Project directory."),
    ide: list[str] = typer.Option(
        [],
        "--ide",
        help="Also configure an IDE to use `loopengt mcp serve` and the loop commands: "
        "cursor, claude-code, codex, antigravity, vscode (or a plugin's). Repeatable.",
    ),
    global_: bool = typer.Option(
        False, "--global", help="With --ide: write the IDE's user-level files, for every project."
    ),
) -> None:
    """Create .loopengt/ (config.toml, prompts/, templates/) and a starter loop.yaml without
    overwriting anything;
    with --ide, merge loopengt into that IDE's configuration (with --global, only that)."""
    from loopengt.project import init_project, shown_path

    if global_ and not ide:
        raise typer.BadParameter("--global needs --ide", param_hint="--global")
    installed = []
    if ide:  # first: an IDE file that cannot be merged stops everything before any write
        from loopengt.ide import install

        installed = install(ide, directory, global_=global_)
    if not global_:  # --global configures the user's IDE, not this folder
        report = init_project(directory)
        for path in report.created:
            console.print(f"[green]created[/] {path}")
        for path in report.kept:
            console.print(f"[dim]exists[/]  {path}")
        if not installed:
            from loopengt.project import NEXT_STEPS

            console.print(f"\n{NEXT_STEPS}", markup=False, highlight=False)
    for item in installed:
        console.print(f"\n[bold]{item.adapter.title}[/]")
        for change in item.changes:
            style = _STYLE.get(change.action, "")
            console.print(f"  [{style}]{change.action:<9}[/] {shown_path(change.path)}")
        console.print(f"  [bold]next:[/] {item.next_steps}")


def register(app: typer.Typer) -> None:
    app.command()(init)
