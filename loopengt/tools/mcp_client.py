"""`mcp` tools: the tools of a stdio or streamable-HTTP MCP server as LangChain tools.

Each server is started once and kept for the run: a background thread runs one asyncio
event loop, and one task per server holds its `ClientSession` open (anyio transports must be
entered and left by the same task). Every tool call is submitted to that loop with
`run_coroutine_threadsafe`: a node under `invoke` waits for it in its thread, a node under
`ainvoke` awaits it on its own loop without holding a thread. `close_all()`
stops every server; the run engine calls it at the end of a run, and atexit does too. A tool
called after `close_all()` starts its server again, so a compiled graph stays usable.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import re
import shlex
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from langchain_core.tools import BaseTool, StructuredTool, ToolException

from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.spec.models import ToolSpec

if TYPE_CHECKING:
    from mcp import ClientSession

DEFAULT_STARTUP_TIMEOUT = 30.0  # `[tools] mcp_startup_timeout_seconds`
DEFAULT_CALL_TIMEOUT = 300.0  # `[tools] mcp_call_timeout_seconds`
CLOSE_TIMEOUT = 10.0  # the SDK waits 2 s for a stdio server to exit, then terminates it

_ENV_VAR = re.compile(r"\$\{([^}]+)\}")


class _OneLineLogs(logging.Filter):
    """The SDK logs a full traceback for every non-JSON line a server prints on stdout; keep
    the message, drop the traceback (our users get a one-line error, not a stack)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


logging.getLogger("mcp.client.stdio").addFilter(_OneLineLogs())


@dataclass(frozen=True)
class ServerParams:
    """How to reach one MCP server; equal params share one running server."""

    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str | None = None

    @classmethod
    def of(cls, spec: ToolSpec) -> ServerParams:
        return cls(spec.command, tuple(spec.args), tuple(sorted(spec.env.items())), spec.url)

    def describe(self) -> str:
        return self.url or shlex.join([self.command or "", *self.args])


def mcp_tools(spec: ToolSpec, config: Config | None = None) -> list[BaseTool]:
    """The tools of the server a spec entry names (only `include` ones when given)."""
    settings = (config or Config.load()).tools
    startup = float(settings.get("mcp_startup_timeout_seconds", DEFAULT_STARTUP_TIMEOUT))
    call_timeout = float(settings.get("mcp_call_timeout_seconds", DEFAULT_CALL_TIMEOUT))
    params = ServerParams.of(spec)
    server = registry.server(params, spec.name, startup)
    offered = server.tools
    if spec.include is not None:
        unknown = [name for name in spec.include if name not in offered]
        if unknown:
            raise UserInputError(
                f"tool {spec.name!r}: the MCP server {params.describe()} has no tool "
                f"{', '.join(map(repr, unknown))}; it offers: {', '.join(offered) or 'nothing'}"
            )
    names = spec.include if spec.include is not None else list(offered)
    return [_sync_tool(offered[name], params, spec.name, startup, call_timeout) for name in names]


def close_all() -> None:
    """Stop every MCP server started in this process."""
    registry.close_all()


def _sync_tool(
    inner: BaseTool, params: ServerParams, label: str, startup: float, call_timeout: float
) -> BaseTool:
    """A synchronous twin of an adapter tool: same name, description and JSON schema (what
    `bind_tools` sends), calling the server through the background loop."""

    def run(**args: Any) -> str:
        # looked up per call: restarts the server if it was closed since
        server = registry.server(params, label, startup)
        return server.call(inner.name, args, call_timeout)

    async def arun(**args: Any) -> str:
        # under ainvoke: the caller's loop awaits the call without holding a thread (a
        # server that must start first does start synchronously, once)
        server = registry.server(params, label, startup)
        return await server.acall(inner.name, args, call_timeout)

    return StructuredTool(
        name=inner.name,
        description=inner.description,
        args_schema=inner.args_schema,
        func=run,
        coroutine=arun,
        metadata=inner.metadata,
    )


class _Server:
    """One running MCP server: the task that holds its session, and its adapter tools."""

    def __init__(self, params: ServerParams, loop: asyncio.AbstractEventLoop) -> None:
        self.params = params
        self.loop = loop
        self.tools: dict[str, BaseTool] = {}
        self.lock = threading.Lock()
        self.started = False
        self.task: concurrent.futures.Future[None] | None = None
        self.stop_event: asyncio.Event | None = None
        self.errlog: TextIO | None = None

    @property
    def dead(self) -> bool:
        return self.started and (self.task is None or self.task.done())

    def start(self, label: str, timeout: float) -> None:
        with self.lock:
            if self.started:
                return
            self.started = True
            ready: concurrent.futures.Future[list[BaseTool]] = concurrent.futures.Future()
            if self.params.command:
                # server logs go to a file: they would clutter our output, but the last
                # line tells why a server did not start; closed in close()
                self.errlog = tempfile.TemporaryFile(  # noqa: SIM115
                    "w+", encoding="utf-8", errors="replace"
                )
            self.task = asyncio.run_coroutine_threadsafe(self._hold(ready, timeout), self.loop)
            try:
                # _hold applies the timeout and cleans up; this one is only a backstop
                tools = ready.result(timeout + CLOSE_TIMEOUT)
            except BaseException as exc:
                self.task.cancel()
                raise UserInputError(
                    f"tool {label!r}: MCP server {self.params.describe()} did not start: "
                    f"{self._why(exc, timeout)}"
                ) from None
            self.tools = {tool.name: tool for tool in tools}

    async def _hold(self, ready: concurrent.futures.Future[list[BaseTool]], timeout: float) -> None:
        from langchain_mcp_adapters.tools import load_mcp_tools

        self.stop_event = asyncio.Event()
        try:
            # the timeout wraps the session so a server that never answers is stopped too
            async with asyncio.timeout(timeout) as deadline, self._session() as session:
                await session.initialize()
                tools = await load_mcp_tools(session, handle_tool_errors=False)
                deadline.reschedule(None)
                ready.set_result(tools)
                await self.stop_event.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[ClientSession]:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = self.params
        if params.url:
            from langchain_mcp_adapters.sessions import create_session

            async with create_session({"transport": "streamable_http", "url": params.url}) as s:
                yield s
            return
        env = {key: _expand(value) for key, value in params.env} if params.env else None
        stdio = StdioServerParameters(command=params.command or "", args=list(params.args), env=env)
        assert self.errlog is not None
        async with (
            stdio_client(stdio, errlog=self.errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            yield session

    def _why(self, exc: BaseException, timeout: float) -> str:
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:g}s"
        elif isinstance(exc, FileNotFoundError):
            why = f"command not found: {self.params.command}"
        else:
            why = " ".join(str(exc).split()) or type(exc).__name__
        if self.errlog is not None:
            self.errlog.seek(0)
            lines = [line.strip() for line in self.errlog.read().splitlines() if line.strip()]
            if lines:
                why += f" (server stderr: {lines[-1][:200]})"
        return why

    def call(self, name: str, args: dict[str, Any], timeout: float) -> str:
        future = self._submit(name, args)
        try:
            content = future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise self._timed_out(name, timeout) from None
        except ToolException as exc:
            # the server reported isError: a plain ToolException keeps the text readable
            raise ToolException(str(exc)) from None
        return _content_text(content)

    async def acall(self, name: str, args: dict[str, Any], timeout: float) -> str:
        """`call` for a caller on another event loop: the session lives on this server's
        loop (its transport must be left by the task that entered it), the caller awaits."""
        future = self._submit(name, args)
        try:
            content = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            future.cancel()
            raise self._timed_out(name, timeout) from None
        except ToolException as exc:
            raise ToolException(str(exc)) from None
        return _content_text(content)

    def _submit(self, name: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        """The adapter tool's call, on the server's loop, in an empty context: the caller's
        holds the node's config, whose callbacks would trace this inner call as a second
        tool call beside the one our tool reports."""
        call = self.tools[name].ainvoke(args)
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, call, self.loop)

    def _timed_out(self, name: str, timeout: float) -> TimeoutError:
        return TimeoutError(f"MCP tool {name!r} gave no answer within {timeout:g}s")

    def close(self) -> None:
        with self.lock:
            if self.task is not None and not self.task.done():
                if self.stop_event is not None:
                    self.loop.call_soon_threadsafe(self.stop_event.set)
                try:
                    self.task.result(CLOSE_TIMEOUT)
                except BaseException:
                    self.task.cancel()
            if self.errlog is not None:
                self.errlog.close()
                self.errlog = None


class _Registry:
    """The MCP servers of this process, and the event loop thread they run on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[ServerParams, _Server] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def server(self, params: ServerParams, label: str, startup_timeout: float) -> _Server:
        with self._lock:
            server = self._servers.get(params)
            if server is None or server.dead:
                server = self._servers[params] = _Server(params, self._event_loop())
        # started outside the registry lock: other servers stay usable meanwhile
        server.start(label, startup_timeout)
        return server

    def running(self) -> int:
        with self._lock:
            return sum(1 for s in self._servers.values() if s.started and not s.dead)

    def close_all(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            for server in servers:
                server.close()
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CLOSE_TIMEOUT)
            if not thread.is_alive():
                loop.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="loopengt-mcp", daemon=True
            )
            self._thread.start()
        return self._loop


def _expand(value: str) -> str:
    """`${VAR}` in an `env:` value comes from our environment (keys stay out of specs)."""
    return _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), value)


def _content_text(content: Any) -> str:
    """The text of a tool result (a list of LangChain content blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict):
            parts.append(f"[{block.get('type')} content: {block.get('mime_type') or 'unknown'}]")
        else:
            parts.append(str(block))
    return "\n".join(parts)


registry = _Registry()
atexit.register(close_all)
