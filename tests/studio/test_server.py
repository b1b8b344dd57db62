"""`loopengt studio --serve` starts a real `langgraph dev` (the server LangGraph Studio talks
to) on 127.0.0.1; the test drives it with `langgraph-sdk` as Studio would: the graphs are
listed with their declared inputs, a run returns every step's output, an approval pauses a
run and a resume finishes it, and a loop stopped by its policy is a run in error."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from tests.studio.helpers import EXAMPLE, make_project, write_spec
from tests.studio.test_export import APPROVAL, STOPS

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(process: subprocess.Popen[Any], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the server did not answer in {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`loopengt studio research-brief publish stops --serve` in a project using the test
    model; yields the server URL and the project folder, then stops the server."""
    project = make_project(tmp_path / "project")
    specs = [
        EXAMPLE,
        write_spec(project, "publish.yaml", APPROVAL),
        write_spec(project, "stops.yaml", STOPS),
    ]
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    for name in ("LOOPENGT_MODEL", "LOOPENGT_PROJECT"):
        env.pop(name, None)
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "loopengt", "studio", *map(str, specs)]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--serve", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the CLI, langgraph dev and its worker: one group
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, url, log)
        yield url, project
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(20)
        with_group_gone(process.pid)


def with_group_gone(pgid: int) -> None:
    """Every process of the server's group has exited (a reloader worker included)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)


def test_langgraph_dev_serves_the_exported_loops(served: tuple[str, Path]) -> None:
    url, project = served
    assert (project / "langgraph.json").is_file()
    asyncio.run(_drive(url))


async def _drive(url: str) -> None:
    client = get_client(url=url)

    assistants = await client.assistants.search()
    by_graph = {a["graph_id"]: a for a in assistants}
    assert set(by_graph) == {"research-brief", "publish", "stops"}
    schemas = await client.assistants.get_schemas(by_graph["research-brief"]["assistant_id"])
    assert schemas["input_schema"]["properties"] == {
        "topic": {"description": "What the brief is about.", "title": "Topic", "type": "string"}
    }
    assert set(schemas["output_schema"]["properties"]) == {"outputs", "status", "stop_reason"}

    thread = await client.threads.create()
    final = await client.runs.wait(
        thread["thread_id"], "research-brief", input={"topic": "tide pools"}
    )
    assert isinstance(final, dict)
    assert final["status"] == "completed" and final["stop_reason"] is None
    assert list(final["outputs"]) == ["facts", "draft", "title"]
    assert "tide pools" in final["outputs"]["facts"]  # the test model echoes its prompt

    # an approval pauses the run; Studio's resume finishes it
    thread = await client.threads.create()
    paused = await client.runs.wait(thread["thread_id"], "publish", input={"topic": "tides"})
    assert isinstance(paused, dict)
    assert paused["__interrupt__"][0]["value"]["step"] == "post"
    done = await client.runs.wait(
        thread["thread_id"], "publish", command={"resume": {"approved": True, "comment": ""}}
    )
    assert isinstance(done, dict)
    assert done["status"] == "completed" and list(done["outputs"]) == ["draft", "post"]

    # a loop its policy stopped is a run in error, its outputs kept in the thread
    thread = await client.threads.create()
    with pytest.raises(Exception, match="LoopNotCompleted: stopped: max_turns"):
        await client.runs.wait(thread["thread_id"], "stops", input={})
    runs = await client.runs.list(thread["thread_id"])
    assert [run["status"] for run in runs] == ["error"]
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["status"] == "stopped"
    assert list(state["values"]["outputs"]) == ["one"]
