"""`mcp` tools against the real test MCP server (tests/support/mcp_server.py) over stdio and
streamable HTTP: loading, include filter, calls from several threads, server-side errors,
startup failures and stopping the server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

from loopengt.errors import UserInputError
from loopengt.graph.context import CompileContext
from loopengt.spec import load_spec_text
from loopengt.spec.models import ToolSpec
from loopengt.tools import load_tools
from loopengt.tools import mcp_client as mcp_tools
from tests.compilers.test_async import NoThreads
from tests.support.tool_calls import acall, call

SERVER = Path(__file__).parent / "support" / "mcp_server.py"
ALL_TOOLS = ["word_count", "shout", "fail", "pid", "sleep", "getenv"]


@pytest.fixture(autouse=True)
def stop_servers() -> Iterator[None]:
    yield
    mcp_tools.close_all()


def server_spec(**fields: Any) -> ToolSpec:
    return ToolSpec(
        name=fields.pop("name", "text"),
        kind="mcp",
        command=sys.executable,
        args=[str(SERVER)],
        **fields,
    )


def by_name(tools: list[Any]) -> dict[str, Any]:
    return {tool.name: tool for tool in tools}


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_loads_every_tool_with_its_name_description_and_schema() -> None:
    tools = by_name(mcp_tools.mcp_tools(server_spec()))
    assert list(tools) == ALL_TOOLS
    schema = convert_to_openai_tool(tools["word_count"])["function"]
    assert schema["name"] == "word_count"
    assert schema["description"] == "Count the words in a text."
    assert schema["parameters"]["properties"] == {"text": {"type": "string"}}
    assert schema["parameters"]["required"] == ["text"]
    assert tools["word_count"].invoke({"text": "one two three"}) == "3"
    assert tools["shout"].invoke({"text": "hi"}) == "HI!"


def test_include_keeps_only_the_named_tools_in_that_order() -> None:
    tools = mcp_tools.mcp_tools(server_spec(include=["shout", "word_count"]))
    assert [t.name for t in tools] == ["shout", "word_count"]


def test_an_unknown_included_tool_is_a_one_line_error_listing_the_offer() -> None:
    with pytest.raises(UserInputError) as err:
        mcp_tools.mcp_tools(server_spec(include=["shout", "whisper"]))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("tool 'text': the MCP server ")
    assert "has no tool 'whisper'; it offers: " + ", ".join(ALL_TOOLS) in message


def test_the_server_is_started_once_and_shared() -> None:
    spec = load_spec_text(
        textwrap.dedent(f"""
        name: shared
        goal: Share one server.
        tools:
          - name: text
            kind: mcp
            command: {sys.executable}
            args: ["{SERVER}"]
        agents:
          - {{name: a, tools: [text]}}
          - {{name: b, tools: [text]}}
        steps:
          - {{name: one, agent: a, prompt: go}}
          - {{name: two, agent: b, prompt: go}}
        """)
    )
    ctx = CompileContext(spec)
    pid_a = by_name(ctx.tools_for(spec.agent("a")))["pid"]
    pid_b = by_name(ctx.tools_for(spec.agent("b")))["pid"]
    pids = {pid_a.invoke({}), pid_a.invoke({}), pid_b.invoke({})}
    assert len(pids) == 1
    assert mcp_tools.registry.running() == 1


def test_calls_from_several_threads_run_concurrently_on_one_session() -> None:
    sleep = by_name(mcp_tools.mcp_tools(server_spec()))["sleep"]
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(sleep.invoke({"seconds": 0.5})))
        for _ in range(6)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["awake"] * 6
    assert time.monotonic() - started < 2.0  # 6 x 0.5 s one after the other would be 3 s


def test_under_ainvoke_calls_are_awaited_on_the_callers_loop_without_a_thread() -> None:
    tools = by_name(mcp_tools.mcp_tools(server_spec()))
    assert acall(tools["shout"], text="async") == ("ASYNC!", "success")
    content, status = acall(tools["fail"], reason="async")
    assert status == "error" and "failed on purpose: async" in content

    async def six_sleeps() -> list[str]:
        # no thread pool to queue on: six 0.5 s calls awaited at once on one loop
        loop = asyncio.get_running_loop()
        loop.set_default_executor(NoThreads())
        return list(
            await asyncio.gather(*(tools["sleep"].ainvoke({"seconds": 0.5}) for _ in range(6)))
        )

    assert asyncio.run(six_sleeps()) == ["awake"] * 6


def test_a_server_side_error_becomes_error_text_for_the_model() -> None:
    fail = by_name(mcp_tools.mcp_tools(server_spec()))["fail"]
    content, status = call(fail, reason="disk full")
    assert status == "error"
    assert content.startswith("error: ToolException: ")
    assert "failed on purpose: disk full" in content
    # the session survives a failed call
    assert call(by_name(mcp_tools.mcp_tools(server_spec()))["shout"], text="ok") == (
        "OK!",
        "success",
    )


def test_a_missing_command_is_a_fast_one_line_error() -> None:
    started = time.monotonic()
    with pytest.raises(UserInputError) as err:
        load_tools([ToolSpec(name="broken", kind="mcp", command="no-such-mcp-server-xyz")])
    assert time.monotonic() - started < 5
    assert str(err.value) == (
        "tool 'broken': MCP server no-such-mcp-server-xyz did not start: "
        "command not found: no-such-mcp-server-xyz"
    )


def test_a_server_that_exits_reports_its_last_stderr_line() -> None:
    script = "import sys; print('boom: no config', file=sys.stderr); sys.exit(3)"
    spec = ToolSpec(name="dies", kind="mcp", command=sys.executable, args=["-c", script])
    with pytest.raises(UserInputError) as err:
        mcp_tools.mcp_tools(spec)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"tool 'dies': MCP server {sys.executable} -c ")
    assert message.endswith("did not start: Connection closed (server stderr: boom: no config)")


def test_a_server_that_never_answers_times_out_and_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".loopengt").mkdir()
    (tmp_path / ".loopengt" / "config.toml").write_text(
        "[tools]\nmcp_startup_timeout_seconds = 1\n"
    )
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    spec = ToolSpec(name="mute", kind="mcp", command=sys.executable, args=["-c", script])
    started = time.monotonic()
    with pytest.raises(UserInputError) as err:
        mcp_tools.mcp_tools(spec)
    assert time.monotonic() - started < 8  # 1 s timeout + the SDK's 2 s grace + SIGTERM
    assert str(err.value).endswith("did not start: no answer within 1s")
    assert not is_running(int(pid_file.read_text()))


def test_a_call_that_takes_too_long_gives_the_model_a_timeout_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".loopengt").mkdir()
    (tmp_path / ".loopengt" / "config.toml").write_text("[tools]\nmcp_call_timeout_seconds = 0.5\n")
    sleep = by_name(mcp_tools.mcp_tools(server_spec()))["sleep"]
    started = time.monotonic()
    content, status = call(sleep, seconds=5)
    assert time.monotonic() - started < 2
    assert (content, status) == (
        "error: TimeoutError: MCP tool 'sleep' gave no answer within 0.5s",
        "error",
    )


def test_env_values_reach_the_server_with_variables_expanded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPENGT_TEST_SECRET", "s3cret")
    spec = server_spec(env={"GREETING": "hello", "TOKEN": "${LOOPENGT_TEST_SECRET}"})
    getenv = by_name(mcp_tools.mcp_tools(spec))["getenv"]
    assert getenv.invoke({"name": "GREETING"}) == "hello"
    assert getenv.invoke({"name": "TOKEN"}) == "s3cret"


def test_close_all_terminates_the_server_and_a_later_call_restarts_it() -> None:
    pid_tool = by_name(mcp_tools.mcp_tools(server_spec()))["pid"]
    first = int(pid_tool.invoke({}))
    assert is_running(first)
    mcp_tools.close_all()
    assert not is_running(first)
    assert mcp_tools.registry.running() == 0
    second = int(pid_tool.invoke({}))  # a compiled graph's tools still work
    assert second != first
    assert is_running(second)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


def test_streamable_http_server(http_server: str) -> None:
    spec = ToolSpec(name="web", kind="mcp", url=http_server, include=["shout", "fail"])
    tools = by_name(mcp_tools.mcp_tools(spec))
    assert list(tools) == ["shout", "fail"]
    assert call(tools["shout"], text="over http") == ("OVER HTTP!", "success")
    content, status = call(tools["fail"], reason="remote")
    assert status == "error" and "failed on purpose: remote" in content


def test_an_unreachable_url_is_a_one_line_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(UserInputError) as err:
        mcp_tools.mcp_tools(ToolSpec(name="web", kind="mcp", url=url))
    assert str(err.value) == (
        f"tool 'web': MCP server {url} did not start: All connection attempts failed"
    )


def test_two_entries_offering_one_tool_name_to_an_agent_are_refused() -> None:
    with pytest.raises(UserInputError) as err:
        load_tools([server_spec(name="one"), server_spec(name="two", include=["shout"])])
    assert str(err.value) == (
        "tools one, two: more than one tool is named 'shout'; narrow an mcp tool with 'include:'"
    )
    both = load_tools(
        [server_spec(name="one", include=["pid"]), server_spec(name="two", include=["shout"])]
    )
    assert [t.name for t in both] == ["pid", "shout"]
