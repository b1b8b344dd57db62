"""`loopengt mcp serve`: thin over loopengt.mcp_server."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from loopengt.errors import UserInputError

app = typer.Typer(help="The MCP server for IDEs and agents.", no_args_is_help=True)


class Transport(StrEnum):
    stdio = "stdio"
    streamable_http = "streamable-http"


@app.command()
def serve(
    transport: Transport = typer.Option(Transport.stdio, "--transport", "-t", help="How to talk."),
    host: str = typer.Option("127.0.0.1", "--host", help="streamable-http: the address."),
    port: int = typer.Option(8000, "--port", "-p", help="streamable-http: the port (/mcp)."),
    root: Path = typer.Option(Path("."), "--root", help="The project: every path stays in it."),
) -> None:
    """Serve loopengt's tools (design, validate, run, trace, eval, templates) over MCP."""
    from loopengt.mcp_server.server import serve as run_server

    if not root.is_dir():
        raise UserInputError(f"--root {root}: not a folder")
    if not 0 < port < 65536:
        raise UserInputError(f"--port {port}: choose 1 to 65535")
    run_server(transport.value, host, port, root)


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(app, name="mcp")
