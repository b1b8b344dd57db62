"""A small MCP server for tests, written with the `mcp` SDK.

`python -m tests.support.mcp_server` serves on stdio (what an `mcp` tool with `command:`
starts); `--http PORT` serves streamable HTTP at http://127.0.0.1:PORT/mcp instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from mcp.server.fastmcp import FastMCP

server = FastMCP("loopengt-test-tools", log_level="WARNING")


@server.tool()
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@server.tool()
def shout(text: str) -> str:
    """Return the text in upper case with an exclamation mark."""
    return text.upper() + "!"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason (to test server-side errors)."""
    raise RuntimeError(f"failed on purpose: {reason}")


@server.tool()
def pid() -> int:
    """The server's process id (lets tests check the server is stopped)."""
    return os.getpid()


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer (to test call timeouts)."""
    await asyncio.sleep(seconds)
    return "awake"


@server.tool()
def getenv(name: str) -> str:
    """The value of an environment variable of the server ('' when unset)."""
    return os.environ.get(name, "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP")
    args = parser.parse_args()
    if args.http is None:
        server.run("stdio")
    else:
        server.settings.host = "127.0.0.1"
        server.settings.port = args.http
        server.run("streamable-http")


if __name__ == "__main__":
    main()
