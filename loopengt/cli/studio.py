"""`loopengt studio FILE...`: thin over loopengt.studio."""

from __future__ import annotations

from pathlib import Path

import typer

from loopengt.cli.output import console, err_console
from loopengt.errors import EXIT_RUN_FAILED, UserInputError


def studio(
    files: list[str] = typer.Argument(..., help="LoopSpec YAML files.", metavar="FILE..."),
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="DIR", help="Where to write (default: the project folder)."
    ),
    serve: bool = typer.Option(False, "--serve", help="Then start `langgraph dev` on them."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="H", help="--serve: the address."),
    port: int = typer.Option(2024, "--port", "-p", metavar="N", help="--serve: the port."),
) -> None:
    """Write langgraph.json and loopengt_graphs.py so `langgraph dev` serves the loops to
    LangGraph Studio (the same files deploy to a LangGraph server)."""
    from loopengt import studio as api
    from loopengt.project import shown_path

    if serve:
        if not 0 < port < 65536:
            raise UserInputError(f"--port {port}: choose 1 to 65535")
        api.check_studio_extra()  # before anything is written
    written = api.export_studio(files, out, check_models=serve)
    names = ", ".join(written.graphs)
    count = len(written.graphs)
    console.print(
        f"wrote {shown_path(written.config_path)} ({count} graph{'s' if count != 1 else ''}: "
        f"{names}) and {shown_path(written.module_path)}",
        markup=False,
    )
    if not serve:
        where = shown_path(written.out)
        go = "" if where == "." else f"cd {where} && "
        again = " ".join([*files, *(["--out", str(out)] if out is not None else []), "--serve"])
        console.print(
            f"serve them: {go}langgraph dev   (or: loopengt studio {again})", markup=False
        )
        return
    console.print(f"Studio: {api.studio_url(host, port)}", markup=False)
    process = api.start_server(written.config_path, host=host, port=port, new_session=False)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        api.stop_server(process)
        raise
    if code != 0:
        err_console.print(f"error: langgraph dev exited with code {code}", markup=False)
        raise typer.Exit(EXIT_RUN_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(studio)
