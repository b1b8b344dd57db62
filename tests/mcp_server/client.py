"""Talking to a real `loopengt mcp serve` subprocess through the `mcp` SDK's client: a stdio
session, a streamable-HTTP server and session, tool calls that check their result, and
polling a run to a status. Every wait has a deadline: nothing here can hang a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.types import CallToolResult

from tests.runs.helpers import cli_env, terminate

T = TypeVar("T")

TOOLS = {
    "design_loop",
    "validate_loop",
    "run_loop",
    "get_run",
    "list_runs",
    "get_trace",
    "eval_run",
    "list_templates",
    "approve_run",
    "resume_run",
}
ENDED = {"interrupted", "completed", "stopped", "failed", "rejected"}
CALL_TIMEOUT = 60.0  # seconds for one request; a test's whole flow has its own deadline


def run(coro: Awaitable[T], timeout: float) -> T:
    """``coro`` to its end on a fresh event loop, or a TimeoutError after ``timeout`` s."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    try:
        return asyncio.run(bounded())
    except BaseExceptionGroup as group:  # the SDK's task groups wrap a failed assertion
        raise _leaf(group) from group


def _leaf(error: BaseException) -> BaseException:
    """The first exception inside nested exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def server_args(root: Path, *extra: str) -> list[str]:
    return ["-m", "loopengt", "mcp", "serve", "--root", str(root), *extra]


class Session:
    """A `ClientSession` plus what the tests check on every session: exceptions the SDK met
    while reading the server's messages (stray bytes on stdout end up here)."""

    def __init__(self, session: ClientSession, stream_errors: list[Exception]) -> None:
        self.session = session
        self.stream_errors = stream_errors

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> CallToolResult:
        return await self.session.call_tool(
            tool, args or {}, read_timeout_seconds=timedelta(seconds=CALL_TIMEOUT)
        )

    async def ok(self, tool: str, **args: Any) -> dict[str, Any]:
        """The structured result of a call that must succeed."""
        result = await self.call(tool, args)
        assert not result.isError, f"{tool}({_short(args)}) failed: {text_of(result)}"
        assert isinstance(result.structuredContent, dict), (
            f"{tool}: no structuredContent: {result.content}"
        )
        return result.structuredContent

    async def error(self, tool: str, **args: Any) -> str:
        """The message of a call that must fail as a tool error (``isError``)."""
        result = await self.call(tool, args)
        assert result.isError, f"{tool}({_short(args)}) did not fail: {result.structuredContent}"
        return text_of(result)

    async def wait_for_status(
        self, run_id: str, statuses: set[str], timeout: float = 60
    ) -> dict[str, Any]:
        """Poll get_run until the run's status is one of ``statuses``; fails on another end."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            info = await self.ok("get_run", run_id=run_id)
            if not seen or seen[-1] != info["status"]:
                seen.append(info["status"])
            if info["status"] in statuses:
                return info
            assert info["status"] not in ENDED, f"run {run_id} ended {info}, wanted {statuses}"
            assert time.monotonic() < deadline, (
                f"run {run_id} not {statuses} after {timeout}s (statuses seen: {seen}): {info}"
            )
            await asyncio.sleep(0.05)

    def assert_stream_clean(self) -> None:
        assert not self.stream_errors, f"the client met bad messages: {self.stream_errors!r}"


def _recorder(errors: list[Exception]) -> Any:
    async def handle(message: Any) -> None:
        if isinstance(message, Exception):
            errors.append(message)

    return handle


@contextlib.asynccontextmanager
async def stdio_session(root: Path, log: Path | None = None) -> AsyncIterator[Session]:
    """A session with a new `loopengt mcp serve --root ROOT` process (its stderr to ``log``)."""
    params = StdioServerParameters(
        command=sys.executable, args=server_args(root), env=cli_env(), cwd=str(root)
    )
    log = log or root.parent / f"{root.name}-server.log"
    errors: list[Exception] = []
    with log.open("a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, message_handler=_recorder(errors)) as session,
        ):
            await session.initialize()
            yield Session(session, errors)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def http_server(root: Path, timeout: float = 60) -> Iterator[str]:
    """`loopengt mcp serve --transport streamable-http` on a free port of 127.0.0.1: yields
    its URL (…/mcp) once it accepts connections; stopped (SIGTERM, then kill) afterwards."""
    port = free_port()
    log = (root.parent / f"{root.name}-http-server.log").open("a", encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            *server_args(root, "--transport", "streamable-http", "--port", str(port)),
        ],
        cwd=root,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"the HTTP server exited with {proc.returncode}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, f"the HTTP server did not listen in {timeout}s"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        terminate(proc, timeout=15)
        log.close()


@contextlib.asynccontextmanager
async def http_session(url: str) -> AsyncIterator[Session]:
    errors: list[Exception] = []
    async with (
        streamablehttp_client(url, timeout=30) as (read, write, _),
        ClientSession(read, write, message_handler=_recorder(errors)) as session,
    ):
        await session.initialize()
        yield Session(session, errors)


def text_of(result: CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return "\n".join(getattr(block, "text", "") for block in result.content)


def dump(result: CallToolResult) -> str:
    """Everything a tool result carries, as one string (to search it for leaked text)."""
    return text_of(result) + json.dumps(result.structuredContent, default=str)


def _short(args: dict[str, Any]) -> str:
    text = json.dumps(args, default=str)
    return text if len(text) < 300 else text[:300] + "…"
