"""What a model or tool call contributes to its trace event, from LangChain's callback
arguments. Only chosen fields are kept — never request headers, client settings or the
serialized model, which can carry API keys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loopengt.providers.pricing import cost_usd
from loopengt.serialization import jsonable
from loopengt.tracing.events import truncate

ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def clip(value: Any, max_chars: int | None) -> Any:
    """``value`` as plain JSON with every string truncated to ``max_chars``."""
    if isinstance(value, str):
        return truncate(value, max_chars)
    if isinstance(value, Mapping):
        return {str(k): clip(v, max_chars) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip(v, max_chars) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return clip(jsonable(value), max_chars)


def text_of(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    text = getattr(message, "text", None)
    if isinstance(text, str) and text:
        return text
    return json.dumps(content, ensure_ascii=False, default=str)


def tool_calls_of(message: Any, max_chars: int | None) -> list[dict[str, Any]]:
    calls = getattr(message, "tool_calls", None) or []
    return [
        {"name": c.get("name"), "args": clip(c.get("args"), max_chars), "id": c.get("id")}
        for c in calls
    ]


def prompt_messages(messages: list[Any], max_chars: int | None) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        kind = getattr(message, "type", "user")
        entry: dict[str, Any] = {
            "role": ROLES.get(kind, getattr(message, "role", kind)),
            "content": truncate(text_of(message), max_chars),
        }
        if calls := tool_calls_of(message, max_chars):
            entry["tool_calls"] = calls
        out.append(entry)
    return out


def model_fields(
    metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any], prompt: list[dict[str, Any]]
) -> dict[str, Any]:
    """Model name and provider as LangChain reports them (``ls_*`` metadata) and the prompt."""
    meta = metadata or {}
    params = kwargs.get("invocation_params") or {}
    model = meta.get("ls_model_name") or params.get("model") or params.get("model_name")
    return {"model": model, "provider": meta.get("ls_provider"), "messages": prompt}


def response_fields(
    response: Any,
    model: str | None,
    max_chars: int | None,
    prices: Mapping[str, tuple[float, float]],
) -> dict[str, Any]:
    """Response text, tool calls, tokens and cost of a finished model call."""
    generations = getattr(response, "generations", None) or [[]]
    generation = generations[0][0] if generations and generations[0] else None
    message = getattr(generation, "message", None)
    text = text_of(message) if message is not None else str(getattr(generation, "text", ""))
    tokens_in, tokens_out = token_counts(message, getattr(response, "llm_output", None))
    meta = getattr(message, "response_metadata", None) or {}
    answered_by = meta.get("model_name") or meta.get("model") or model
    fields: dict[str, Any] = {
        "response": truncate(text, max_chars),
        "tool_calls": tool_calls_of(message, max_chars),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        # priced like the run's usage (loopengt.graph.calls.usage_of): by the model that
        # answered, falling back to the one asked for
        "cost_usd": cost_usd(answered_by, tokens_in, tokens_out, prices),
    }
    if answered_by and not model:
        fields["model"] = answered_by
    elif answered_by and answered_by != model:
        fields["response_model"] = answered_by
    return fields


def token_counts(message: Any, llm_output: Mapping[str, Any] | None) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None)
    if usage:
        return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    legacy = (llm_output or {}).get("token_usage") or {}
    return int(legacy.get("prompt_tokens") or 0), int(legacy.get("completion_tokens") or 0)


def tool_output_text(output: Any) -> str:
    """A tool's result as text (tools invoked with a tool call return a ToolMessage)."""
    if isinstance(output, str):
        return output
    if hasattr(output, "content"):
        return text_of(output)
    try:
        return json.dumps(output, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(output)
