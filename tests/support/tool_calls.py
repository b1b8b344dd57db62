"""One tool call made the way an agent turn makes it (through the call drivers), for tests
of tools on their own."""

from __future__ import annotations

import asyncio
from typing import Any

from loopengt.graph.calls import ToolUse, Work, adrive, drive


def _work(tool: Any, args: dict[str, Any]) -> Work[tuple[str, str]]:
    return (yield ToolUse(tool, {"name": tool.name, "args": args, "id": "c1"}))


def call(tool: Any, **args: Any) -> tuple[str, str]:
    """(content, status) the tool loop hands the model for one call, under `invoke`."""
    return drive(_work(tool, args), {})


def acall(tool: Any, **args: Any) -> tuple[str, str]:
    """The same under `ainvoke`: the tool is awaited on an event loop."""
    return asyncio.run(adrive(_work(tool, args), {}))
