"""A run started over MCP outlives the client: the stdio server finishes it after the client
has gone, and a new server process reports on it (the run is in the project, not in the
server). Paths given to the server never leave its root."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from loopengt.errors import UserInputError
from loopengt.mcp_server.runs import confine
from loopengt.runs.engine import list_runs

REPO = Path(__file__).resolve().parents[2]
SPEC = (REPO / "examples" / "review-loop.yaml").read_text()


async def _call(root: Path, tool: str, args: dict[str, Any]) -> Any:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {k: v for k, v in os.environ.items() if k not in ("LOOPENGT_MODEL", "OPENAI_API_KEY")}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopengt", "mcp", "serve", "--root", str(root)],
        env=env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(tool, args)
        assert not result.isError, result.content
        return result.structuredContent


def call(root: Path, tool: str, **args: Any) -> Any:
    return asyncio.run(asyncio.wait_for(_call(root, tool, args), timeout=60))


def test_a_run_finishes_after_the_client_leaves_and_a_new_server_reports_it(
    tmp_path: Path,
) -> None:
    started = call(
        tmp_path, "run_loop", spec_yaml=SPEC, inputs={"subject": "owls"}, model="test:delay=0.5"
    )
    run_id = started["run_id"]
    assert started["status"] == "running"  # the client leaves at once
    for _ in range(100):  # the old server process finishes the run on its own
        records = {r.run_id: r for r in list_runs(root=tmp_path)}
        if run_id in records and records[run_id].status != "running":
            break
        asyncio.run(asyncio.sleep(0.1))
    assert records[run_id].status == "completed"
    info = call(tmp_path, "get_run", run_id=run_id)  # a new server process
    assert info["status"] == "completed" and info["steps_completed"] == 2
    assert json.loads(json.dumps(info["outputs"]))["write"].startswith("test reply")


def test_paths_are_confined_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "specs").mkdir(parents=True)
    (tmp_path / "outside.yaml").write_text(SPEC)
    (root / "specs" / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    (root / "specs" / "ok.yaml").write_text(SPEC)
    resolved = root.resolve()
    assert confine(resolved, "specs/ok.yaml") == resolved / "specs" / "ok.yaml"
    assert confine(resolved, str(resolved / "specs" / "ok.yaml")).name == "ok.yaml"
    for bad, why in [
        ("../outside.yaml", "'..' is not allowed"),
        ("specs/../../outside.yaml", "'..' is not allowed"),
        (str(tmp_path / "outside.yaml"), "outside the server's root"),
        ("specs/link.yaml", "outside the server's root"),
        ("/etc/passwd", "outside the server's root"),
        ("", "empty or invalid"),
        ("a\x00b", "empty or invalid"),
    ]:
        with pytest.raises(UserInputError, match=why):
            confine(resolved, bad)


def test_the_readme_snippet_starts_a_working_server(tmp_path: Path) -> None:
    """The README's IDE snippet, run as written (the project path: this repository)."""
    import re
    import shutil

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## From an IDE.*?```json\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    server = json.loads(block.group(1))["mcpServers"]["loopengt"]
    args = [a.replace("/path/to/project", str(REPO), 1) for a in server["args"]]
    args[-1] = str(tmp_path)  # --root: the user's project

    async def tools() -> list[str]:
        params = StdioServerParameters(command=server["command"], args=args)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return [t.name for t in (await session.list_tools()).tools]

    names = asyncio.run(asyncio.wait_for(tools(), timeout=120))
    assert {"design_loop", "run_loop", "get_run", "list_templates"} <= set(names)


def test_a_waited_run_reports_progress_and_a_log_line_per_step(tmp_path: Path) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def on_log(params: Any) -> None:
        logs.append(str(params.data))

    async def run() -> Any:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "loopengt", "mcp", "serve", "--root", str(tmp_path)]
        )
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write, logging_callback=on_log) as session,
        ):
            await session.initialize()
            args = {"spec_yaml": SPEC, "inputs": {"subject": "owls"}, "model": "test", "wait": True}
            return await session.call_tool("run_loop", args, progress_callback=on_progress)

    result = asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert not result.isError and result.structuredContent["status"] == "completed"
    assert [(done, total) for done, total, _ in progress] == [(1.0, 2.0), (2.0, 2.0)]
    assert [message for *_, message in progress] == ["step write ok", "step review ok"]
    assert logs == ["step write ok", "step review ok"]
