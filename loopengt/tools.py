"""Tools declared in a spec -> LangChain tools."""

from __future__ import annotations

import importlib
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from loopengt.errors import UserInputError
from loopengt.spec.models import ToolSpec


def load_tools(specs: list[ToolSpec]) -> list[BaseTool]:
    return [_load(spec) for spec in specs]


def _load(spec: ToolSpec) -> BaseTool:
    if spec.kind == "function":
        return _function_tool(spec)
    raise UserInputError(f"tool {spec.name!r}: {spec.kind} tools are not supported yet")


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
