"""Structured output that survives weak models.

We ask for JSON with the provider's JSON-schema mode where it has one (OpenAI-compatible
servers, llama.cpp), then parse and validate the text ourselves, so every model — including
fakes and tiny local ones — goes through the same repair loop: show the model its error,
ask again a bounded number of times, then fail the step with the raw text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from loopengt.errors import LoopengtError
from loopengt.graph.calls import Calls, Work

REPAIR_ATTEMPTS = 2
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class StructuredOutputError(LoopengtError):
    """The model did not produce valid JSON for the schema, even after repair."""

    def __init__(self, what: str, reason: str, raw: str) -> None:
        shown = raw if len(raw) <= 300 else raw[:297] + "..."
        super().__init__(f"{what}: no valid structured output ({reason}); raw reply: {shown!r}")
        self.raw = raw


def supports_json_schema(model: BaseChatModel) -> bool:
    """OpenAI-compatible clients take `response_format`; our own models (the llama.cpp
    adapter, the cassette's wrappers) say whether they do in `json_schema_mode`."""
    declared = getattr(model, "json_schema_mode", None)
    if isinstance(declared, bool):
        return declared
    return any(c.__name__ == "BaseChatOpenAI" for c in type(model).__mro__)


def response_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "output"
    return {"type": "json_schema", "json_schema": {"name": safe, "schema": schema}}


def parse_json(text: str) -> Any:
    """The JSON value in a reply: bare, fenced, or the outermost {...} inside prose."""
    text = text.strip()
    candidates = [text]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    error: json.JSONDecodeError | None = None
    for candidate in candidates:
        try:
            # strict=False: llama.cpp's JSON grammar lets raw newlines into strings
            return json.loads(candidate, strict=False)
        except json.JSONDecodeError as exc:
            error = error or exc
    raise ValueError(f"not JSON: {error.msg if error else 'empty reply'}")


def check(value: Any, schema: dict[str, Any]) -> None:
    import jsonschema  # ~50 ms: only runs with structured outputs pay for it

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise ValueError(f"{where + ': ' if where else ''}{exc.message}") from None


def structured_call(
    calls: Calls,
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: dict[str, Any],
    *,
    what: str,
    attempts: int = REPAIR_ATTEMPTS + 1,
) -> Work[Any]:
    """Call ``model`` until its reply is JSON valid against ``schema``; the parsed value.

    A generator of the turn's model calls (see calls.py); every reply is kept in ``calls``,
    so their usage counts too.
    """
    bound: Any = model
    if supports_json_schema(model):
        bound = model.bind(response_format=response_format(schema, what))
    instruction = (
        "Reply with only a JSON object that matches this JSON Schema, no other text:\n"
        + json.dumps(schema)
    )
    conversation = [*messages, HumanMessage(instruction)]
    reason = "no reply"
    raw = ""
    for _ in range(attempts):
        reply: AIMessage = yield calls.model(bound, conversation)
        raw = str(reply.text)
        try:
            value = parse_json(raw)
            check(value, schema)
            return value
        except ValueError as exc:
            reason = str(exc)
            conversation = [
                *conversation,
                reply,
                HumanMessage(f"That reply was invalid: {reason}. {instruction}"),
            ]
    raise StructuredOutputError(what, reason, raw)
