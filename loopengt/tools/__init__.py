"""Tools declared in a spec -> LangChain tools: `function` here, `mcp` in
:mod:`loopengt.tools.mcp_client`, `builtin` in :mod:`loopengt.tools.builtin`."""

from __future__ import annotations

import importlib
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.spec.models import LoopSpec, ToolSpec


def load_tools(specs: list[ToolSpec], config: Config | None = None) -> list[BaseTool]:
    """The LangChain tools of some spec entries (an `mcp` entry gives all the tools of its
    server that it includes); ``config`` is the project's (default: the working directory's)."""
    config = config or Config.load()
    tools: list[BaseTool] = []
    for spec in specs:
        tools += _load(spec, config)
    seen: dict[str, int] = {}
    for tool in tools:
        seen[tool.name] = seen.get(tool.name, 0) + 1
    clashes = [name for name, count in seen.items() if count > 1]
    if clashes:
        # the tool loop finds tools by name: two with one name would be ambiguous
        raise UserInputError(
            f"tools {', '.join(s.name for s in specs)}: more than one tool is named "
            f"{', '.join(map(repr, clashes))}; narrow an mcp tool with 'include:'"
        )
    return tools


def check_functions(specs: list[ToolSpec]) -> None:
    """Import every `function` tool now: a path that does not import is bad input (exit 2)
    found when the spec compiles, not a failed step after the first model call."""
    for spec in specs:
        if spec.kind == "function":
            _function_tool(spec)


def preflight(spec: LoopSpec, config: Config) -> None:
    """Start every MCP server the spec's agents use, and check its `include` names: a server
    that cannot start is bad input found when a run starts (exit 2, no run), not a failed
    step after other steps paid for their model calls. The servers stay up for the run.
    Not at compile time: `validate`, `graph` and Studio compile specs without running them."""
    used = {name for agent in spec.agents for name in agent.tools}
    servers = [t for t in spec.tools if t.kind == "mcp" and t.name in used]
    if not servers:
        return
    from loopengt.tools.mcp_client import mcp_tools

    for entry in servers:
        mcp_tools(entry, config)


def _load(spec: ToolSpec, config: Config) -> list[BaseTool]:
    if spec.kind == "mcp":
        # imported here: most specs have no MCP tools, and the SDK takes a while to import
        from loopengt.tools.mcp_client import mcp_tools

        return mcp_tools(spec, config)
    if spec.kind == "builtin":
        from loopengt.tools.builtin import builtin_tool

        return [builtin_tool(spec, config)]
    return [_function_tool(spec)]


def _function_tool(spec: ToolSpec) -> BaseTool:
    module_name, _, attr = (spec.function or "").partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise UserInputError(
            f"tool {spec.name!r}: cannot import {spec.function!r}: {exc}"
        ) from None
    if isinstance(target, BaseTool):
        return target
    if not callable(target):
        raise UserInputError(f"tool {spec.name!r}: {spec.function!r} is not callable")
    return StructuredTool.from_function(
        target, name=spec.name, description=spec.description or None
    )
