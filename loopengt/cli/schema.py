"""`loopengt schema`"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from loopengt.cli.output import console


def schema(
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to this file."),
) -> None:
    """Print the JSON Schema of a LoopSpec (for editor completion)."""
    from loopengt.spec.schema import loopspec_json_schema

    text = json.dumps(loopspec_json_schema(), indent=2)
    if output is None:
        console.out(text, highlight=False)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command()(schema)
