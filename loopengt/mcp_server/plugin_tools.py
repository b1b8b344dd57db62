"""MCP tools that plugins add to `loopengt mcp serve` (entry point group `loopengt.mcp_tools`)."""

from __future__ import annotations

import sys

from mcp.server.fastmcp import FastMCP

from loopengt import plugins


def add_plugin_tools(mcp: FastMCP) -> None:
    """The tools of `loopengt.mcp_tools` plugins: an entry point names a function (the tool,
    called by the entry point's name) or a list of functions (each by its own name). One
    that would replace a loopengt tool, or that FastMCP cannot describe, is skipped with a
    line on stderr; the server starts either way."""
    taken = {tool.name for tool in mcp._tool_manager.list_tools()}
    for entry in plugins.load("mcp_tools"):
        if entry.problem is not None:
            print(
                f"loopengt: mcp_tools plugin {entry.plugin!r} tool {entry.name!r} skipped: "
                f"{entry.problem}",
                file=sys.stderr,
            )
            continue
        single = not isinstance(entry.value, list | tuple)
        functions = [entry.value] if single else list(entry.value)
        for fn in functions:
            name = entry.name if single else getattr(fn, "__name__", entry.name)
            try:
                if name in taken:
                    raise ValueError(f"a tool named {name!r} exists already")
                mcp.add_tool(fn, name=name)
            except Exception as exc:
                print(
                    f"loopengt: mcp_tools plugin {entry.plugin!r} tool {name!r} skipped: "
                    f"{plugins.reason(exc)}",
                    file=sys.stderr,
                )
                continue
            taken.add(name)
