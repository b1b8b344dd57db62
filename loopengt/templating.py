"""Prompt templates: ``{{goal}}``, ``{{input.KEY}}``, ``{{steps.NAME}}`` (or ``{{NAME}}``),
``{{steps.NAME.field}}`` for structured outputs, and the pattern variables ``{{feedback}}``
(evaluator feedback), ``{{item}}`` (the fan-out map element) and ``{{task}}`` (the
supervisor's or handoff instruction).

Double braces keep single braces free for JSON examples inside prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PATTERN_VARIABLES = ("feedback", "item", "task")


@dataclass(frozen=True)
class Reference:
    """What one placeholder names."""

    kind: str  # "goal" | "input" | "step" | "variable" | "unknown"
    name: str = ""  # input key, step name or variable name
    field_path: tuple[str, ...] = ()


def placeholders(template: str) -> list[str]:
    return [m.group(1) for m in PLACEHOLDER.finditer(template)]


def resolve(expr: str, step_names: set[str] | frozenset[str]) -> Reference:
    parts = tuple(expr.split("."))
    head, rest = parts[0], parts[1:]
    if expr == "goal":
        return Reference("goal")
    if head == "input":
        return Reference("input", rest[0] if rest else "", rest[1:])
    if head == "steps" and rest:
        return Reference("step", rest[0], rest[1:])
    if head in step_names:
        return Reference("step", head, rest)
    if expr in PATTERN_VARIABLES:
        return Reference("variable", expr)
    return Reference("unknown", head, rest)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _dig(value: Any, field_path: tuple[str, ...]) -> Any:
    for key in field_path:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def render(
    template: str,
    *,
    goal: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
) -> str:
    """Fill a template. Names are checked at validation time; anything still missing at run
    time (a step that has not produced output yet) renders as an empty string."""
    step_names = frozenset(outputs)
    variables = variables or {}

    def substitute(match: re.Match[str]) -> str:
        ref = resolve(match.group(1), step_names)
        if ref.kind == "goal":
            return goal
        if ref.kind == "input":
            return _as_text(_dig(inputs, (ref.name, *ref.field_path)) if ref.name else inputs)
        if ref.kind == "step":
            return _as_text(_dig(outputs.get(ref.name), ref.field_path))
        if ref.kind == "variable":
            return _as_text(variables.get(ref.name))
        return ""

    return PLACEHOLDER.sub(substitute, template)
