"""`loopengt template list|show|use`: thin over loopengt.design.templates."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from loopengt.cli.output import console, err_console

app = typer.Typer(help="Built-in, project and plugin LoopSpec templates.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List templates: name, pattern, purpose, source (broken ones with the reason)."""
    from rich.table import Table

    from loopengt.design.templates import list_templates

    templates = list_templates()
    if as_json:
        rows = [
            {
                "name": t.name,
                "pattern": t.pattern if t.ok else None,
                "purpose": t.purpose if t.ok else None,
                "source": t.source,
                "path": str(t.path) if t.path else None,
                "problem": t.problem,
            }
            for t in templates
        ]
        console.out(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("name", "pattern", "purpose", "source", box=None, pad_edge=False)
    for t in templates:
        style = None if t.ok else "red"
        table.add_row(t.name, t.pattern, t.purpose, t.source, style=style)
    console.print(table)


@app.command()
def show(
    name: str = typer.Argument(..., help="Template name (planner-executor or planner_executor)."),
    readme: bool = typer.Option(False, "--readme", help="Show the template's README instead."),
) -> None:
    """Print a template's loop.yaml, syntax-highlighted."""
    from rich.markdown import Markdown
    from rich.syntax import Syntax

    from loopengt.design.templates import get_template

    template = get_template(name)
    template.require()
    if readme:
        console.print(Markdown(template.readme() or f"{template.name} has no README."))
        return
    if console.is_terminal:
        syntax = Syntax(template.text(), "yaml", theme="ansi_dark", background_color="default")
        console.print(syntax)
    else:
        console.out(template.text(), end="", highlight=False)


@app.command()
def use(
    name: str = typer.Argument(..., help="Template name."),
    output: Path = typer.Option(Path("loop.yaml"), "-o", "--output", help="Spec file to write."),
    goal: str | None = typer.Option(None, "--goal", "-g", help="Your goal, in place of its own."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a template to a spec file (default loop.yaml), with your goal filled in."""
    from loopengt.design.templates import get_template
    from loopengt.errors import UserInputError
    from loopengt.serialization import write_atomically

    template = get_template(name)
    text = template.render(goal)
    if output.exists() and not force:
        raise UserInputError(f"{output} exists; use --force to overwrite it")
    try:
        write_atomically(output, text)
    except OSError as exc:
        raise UserInputError(f"cannot write {output}: {exc.strerror or exc}") from None
    spec = template.require()
    console.print(f"[green]wrote[/] {output} from template '{template.name}' ({template.source})")
    inputs = "".join(f" -i {n}=..." for n, i in spec.inputs.items() if i.required)
    err_console.print(f"next: loopengt run {output}{inputs}", markup=False, highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="template")
