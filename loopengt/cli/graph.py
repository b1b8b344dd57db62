"""`loopengt graph FILE`"""

from __future__ import annotations

import typer

from loopengt.cli.output import console


def graph(
    file: str = typer.Argument(..., help="LoopSpec YAML file."),
) -> None:
    """Print the compiled LangGraph graph as Mermaid."""
    from loopengt.compile import compile_spec

    compiled = compile_spec(file, check_models=False)
    console.out(compiled.get_graph().draw_mermaid(), highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(graph)
