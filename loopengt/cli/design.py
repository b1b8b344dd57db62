"""`loopengt design "GOAL"`: thin over loopengt.design.adesign."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from loopengt.cli.output import console, err_console


def design(
    goal: str = typer.Argument(..., help="What the loop should achieve, in a sentence or two."),
    output: Path = typer.Option(Path("loop.yaml"), "-o", "--output", help="Spec file to write."),
    doc: Path = typer.Option(
        Path("LOOP_DESIGN.md"), "--doc", help="Design document to write beside it."
    ),
    pattern: str | None = typer.Option(None, "--pattern", "-p", help="Use this pattern."),
    model: str | None = typer.Option(None, "--model", "-m", help="The designing model."),
    attempts: int = typer.Option(3, "--attempts", help="Model answers to try (repair rounds)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Have a model design a loop for GOAL (validated, repaired) into loop.yaml + LOOP_DESIGN.md."""
    from loopengt.design import design as run_design
    from loopengt.design import write_design

    for path in (output, doc):  # fail before spending model calls
        if path.exists() and not force:
            from loopengt.errors import UserInputError

            raise UserInputError(f"{path} exists; use --force to overwrite it")
    result = run_design(
        goal,
        pattern=pattern,
        model=model,
        attempts=attempts,
        on_progress=lambda line: err_console.print(f"design: {line}", markup=False),
    )
    written = write_design(result, output, doc, force=force)
    if as_json:
        payload = {
            "spec_path": str(output),
            "doc_path": str(doc),
            "pattern": result.spec.pattern,
            "attempts": result.attempts,
            "fallback": result.fallback,
            "template": result.template,
        }
        console.out(json.dumps(payload, ensure_ascii=False))
        return
    if result.fallback:
        err_console.print(
            f"[yellow]fell back[/] to template '{result.template}': {result.fallback}",
            highlight=False,
        )
    for path in written:
        console.print(f"[green]wrote[/] {path}", highlight=False)
    spec = result.spec
    console.print(
        f"{spec.name}: {spec.pattern}, {len(spec.agents)} agents, {len(spec.steps)} steps",
        highlight=False,
    )
    inputs = "".join(f" -i {n}=..." for n, i in spec.inputs.items() if i.required)
    console.print(f"next: loopengt run {output}{inputs}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(design)
