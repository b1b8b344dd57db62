"""Structured output that survives weak models and servers that are not quite OpenAI.

How the JSON is asked for is a method, set by `[llm] structured_output` (or per provider,
`[llm.openai] structured_output`):

- ``json_schema``: `response_format` with the schema (OpenAI; llama.cpp in process);
- ``json_object``: `response_format: {"type": "json_object", "schema": ...}`, which
  llama-cpp-python's server turns into a grammar (it refuses ``json_schema``);
- ``function_calling``: one forced tool whose parameters are the schema;
- ``prompt``: only the instruction in the prompt;
- ``auto`` (the default): ``json_schema`` for models that take `response_format`, else
  ``prompt``; when a server refuses the request (400/422, or a 500 saying it is invalid), the
  next of json_schema → json_object → prompt is tried once, and kept for the rest of the run.

Whatever the method, we parse and validate the reply ourselves, so every model — including
fakes and tiny local ones — goes through the same repair loop: show the model its error,
ask again a bounded number of times, then fail the step with the raw text.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from loopengt.errors import LoopengtError, UserInputError
from loopengt.graph.calls import Calls, Work

REPAIR_ATTEMPTS = 2
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class StructuredOutputError(LoopengtError):
    """The model did not produce valid JSON for the schema, even after repair."""

    def __init__(self, what: str, reason: str, raw: str) -> None:
        shown = raw if len(raw) <= 300 else raw[:297] + "..."
        super().__init__(f"{what}: no valid structured output ({reason}); raw reply: {shown!r}")
        self.raw = raw


METHODS = ("json_schema", "json_object", "function_calling", "prompt")
FALLBACKS = {"json_schema": "json_object", "json_object": "prompt"}


@dataclass
class OutputMethod:
    """How one model is asked for JSON: the setting, and the method in use (``auto`` moves
    on from a method its server refused, once per method, for the rest of the run)."""

    setting: str
    current: str

    def fallback(self, exc: Exception) -> str | None:
        """The method to try after ``exc``, if it is a refusal ``auto`` can route around."""
        from loopengt.providers.errors import refused

        if self.setting != "auto" or not refused(exc):
            return None
        return FALLBACKS.get(self.current)


_METHODS: dict[int, OutputMethod] = {}


def set_method(model: BaseChatModel, setting: str) -> None:
    """Ask ``model`` for JSON by ``setting`` (a METHODS value or ``auto``), unless it has a
    method already (what a run learned stays for the model's life)."""
    if id(model) in _METHODS:
        return
    if setting not in (*METHODS, "auto"):
        raise UserInputError(f"structured_output {setting!r}: use auto, {', '.join(METHODS)}")
    default = "json_schema" if supports_json_schema(model) else "prompt"
    _METHODS[id(model)] = OutputMethod(setting, default if setting == "auto" else setting)
    weakref.finalize(model, _METHODS.pop, id(model), None)


def method_of(model: BaseChatModel) -> OutputMethod:
    found = _METHODS.get(id(model))
    if found is None:  # a model no compiler configured (a judge, a test): the default
        return OutputMethod("auto", "json_schema" if supports_json_schema(model) else "prompt")
    return found


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
    so their usage counts too. A method the server refuses is replaced (see the module
    docstring) without using up a repair attempt.
    """
    how = method_of(model)
    bound = _asking(model, how.current, schema, what)
    instruction = (
        "Reply with only a JSON object that matches this JSON Schema, no other text:\n"
        + json.dumps(schema)
    )
    conversation = [*messages, HumanMessage(instruction)]
    reason = "no reply"
    raw = ""
    tries = 0
    while tries < attempts:
        try:
            reply: AIMessage = yield calls.model(bound, conversation)
        except Exception as exc:
            after = how.fallback(exc)
            if after is None:
                raise
            how.current = after  # for this model's later calls too
            bound = _asking(model, after, schema, what)
            continue
        tries += 1
        raw = _answer_text(reply)
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


def _asking(model: BaseChatModel, method: str, schema: dict[str, Any], what: str) -> Any:
    """``model`` bound to ask for JSON by ``method``."""
    if method == "json_schema":
        return model.bind(response_format=response_format(schema, what))
    if method == "json_object":
        return model.bind(response_format={"type": "json_object", "schema": schema})
    if method == "function_calling":
        name = response_format(schema, what)["json_schema"]["name"]
        tool = {"type": "function", "function": {"name": name, "parameters": schema}}
        return model.bind_tools([tool], tool_choice=name)
    return model


def _answer_text(reply: AIMessage) -> str:
    """The reply's JSON text: a forced tool call's arguments, else its content."""
    if reply.tool_calls:
        return json.dumps(reply.tool_calls[0]["args"])
    return str(reply.text)
