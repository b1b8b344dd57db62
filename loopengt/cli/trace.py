"""`loopengt trace RUN_ID`"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from loopengt.cli.output import console, err_console


class TraceFormat(StrEnum):
    tree = "tree"
    json = "json"
    jsonl = "jsonl"
    markdown = "markdown"
    html = "html"
    otel = "otel"


def trace(
    run_id: str = typer.Argument(..., help="The run id (see `loopengt runs`)."),
    fmt: TraceFormat = typer.Option(
        TraceFormat.tree,
        "--format",
        "-f",
        help="tree (default), or an export: json, jsonl, markdown, html (one self-contained "
        "page: graph, timeline, cost), otel (OpenTelemetry: OTLP when "
        "OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set, else spans as JSON).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to FILE instead of stdout.", metavar="FILE"
    ),
    checkpointer: str | None = typer.Option(
        None,
        "--checkpointer",
        help="The runs' database, when not the config's: with PostgreSQL the trace is read "
        "from it, whichever machine ran each session.",
    ),
) -> None:
    """Show a run's trace as a tree with timings, or export it. A run still going (or
    killed) shows what it recorded so far."""
    from loopengt.config import Config
    from loopengt.runs.shared_trace import run_trace
    from loopengt.tracing.exports import to_json, to_jsonl, to_markdown

    loaded = run_trace(run_id, Config.load(), checkpointer)
    if fmt is TraceFormat.tree:
        from rich.console import Console

        from loopengt.tracing.render import render_tree

        # soft_wrap off: long labels wrap inside the tree's guides instead of being cut off
        if output is None:
            console.print(render_tree(loaded), soft_wrap=False)
            return
        with output.open("w", encoding="utf-8") as fh:
            Console(file=fh, width=120, no_color=True).print(render_tree(loaded))
    elif fmt is TraceFormat.otel:
        export_otel(loaded, output)
        return
    else:
        writers = {TraceFormat.json: to_json, TraceFormat.jsonl: to_jsonl}
        if fmt is TraceFormat.html:
            text = _html(run_id, loaded)
        else:
            text = writers.get(fmt, to_markdown)(loaded)
        if output is None:
            typer.echo(text, nl=False)
            return
        output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {output}", style="dim")


def _html(run_id: str, loaded: dict[str, object]) -> str:
    """The page, with the run's graph when the run index still has its spec."""
    from loopengt.runs.engine import run_record
    from loopengt.tracing.html import trace_html

    graph = None
    record = run_record(run_id)
    if record is not None:
        from loopengt.compile import compile_spec
        from loopengt.spec import load_spec_text

        spec = load_spec_text(record.spec_text, filename=record.spec_path)
        graph = compile_spec(spec, check_models=False).get_graph()
    return trace_html(loaded, graph)


def export_otel(loaded: dict[str, object], output: Path | None) -> None:
    from loopengt.tracing.otel import export, otlp_endpoint

    endpoint = otlp_endpoint()
    if endpoint or output is None:
        count = export(loaded)  # OTLP, or JSON spans on stdout
    else:
        with output.open("w", encoding="utf-8") as fh:
            count = export(loaded, out=fh)
    where = f"OTLP endpoint {endpoint}" if endpoint else str(output or "stdout")
    err_console.print(f"exported {count} spans to {where}", style="dim", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(trace)
