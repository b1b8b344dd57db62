"""Grammar-constrained decoding for the embedded model: structured output and tool calls.

llama.cpp decodes under a grammar made from a JSON schema (`response_format: json_object` with
a `schema`). Structured output bounds the schema's free strings so a reply fits max_tokens.

Tool calls. Why a grammar: SmolLM2-135M has no tool-calling chat format, and left free it
rarely writes a well-formed call. Offered tools, its reply is decoded under a JSON schema that
allows exactly one of: a call of an offered tool (its name, and arguments valid for that
tool's parameters), or a final answer. llama.cpp turns the schema into a grammar, so every
reply parses; the model only chooses. The reply becomes an AIMessage with `tool_calls` (or
text), so the tool loop, handoffs and traces treat it like any provider's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

ANSWER = "answer"
DEFAULT_MAX_LENGTH = 300  # maxLength given to structured-output strings that have none
# tokens kept for the JSON around the strings: braces, and per property its key plus quotes,
# colon, comma and a little whitespace
SKELETON_TOKENS = 8
TOKENS_PER_PROPERTY = 8


# -- structured output --------------------------------------------------------------------


def string_budget(schema: dict[str, Any], max_tokens: int) -> int:
    """The longest string each field may hold so the whole JSON fits in ``max_tokens``.

    Counts one token per character (byte-level BPE: every token is at least one byte, so
    ASCII text never takes more tokens than characters): the JSON around the strings (keys,
    punctuation, enum values) is kept free, the rest is shared among the string fields.
    """
    strings, skeleton = 0, SKELETON_TOKENS
    for node in _schemas(schema):
        strings += _is_free_string(node)
        skeleton += sum(len(key) + TOKENS_PER_PROPERTY for key in node.get("properties") or {})
        literals = [*node.get("enum", []), *([node["const"]] if "const" in node else [])]
        skeleton += max((len(json.dumps(v)) for v in literals), default=0)
    return max(1, min(DEFAULT_MAX_LENGTH, (max_tokens - skeleton) // max(1, strings)))


_ANNOTATIONS = ("title", "description", "default", "examples")


def bound_strings(schema: dict[str, Any], limit: int) -> dict[str, Any]:
    """A copy of ``schema`` in which every free-text string has ``maxLength <= limit``
    (llama.cpp's JSON-schema grammar honours maxLength, so the text cannot run past it).

    A subschema of annotations only (pydantic writes ``{"default": null, "title": "Default"}``
    for an ``Any`` field) becomes ``{}``, any value: llama.cpp's grammar converter refuses it.
    """
    bounded: dict[str, Any] = copy.deepcopy(schema)
    for node in _schemas(bounded):
        if node and set(node) <= set(_ANNOTATIONS):
            node.clear()
        if _is_free_string(node):
            node["maxLength"] = min(int(node.get("maxLength", limit)), limit)
    return bounded


def _is_free_string(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
    return is_string and "enum" not in node and "const" not in node


# keys whose value is a schema, a list of schemas, or a map of name -> schema
_SCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_LIST_KEYS = ("items", "prefixItems", "anyOf", "oneOf", "allOf")
_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _schemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every subschema of ``schema`` (itself included), walking only schema-valued keys so
    literal values (enum, const, default, examples) are never mistaken for schemas."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in _SCHEMA_KEYS:
        if isinstance(schema.get(key), dict):
            yield from _schemas(schema[key])
    for key in _LIST_KEYS:
        if isinstance(schema.get(key), list):
            for item in schema[key]:
                yield from _schemas(item)
    for key in _MAP_KEYS:
        if isinstance(schema.get(key), dict):
            for item in schema[key].values():
                yield from _schemas(item)


def llama_response_format(response_format: Any, max_tokens: int) -> dict[str, Any] | None:
    """OpenAI-style ``response_format`` (what structured.py binds) -> llama-cpp-python's
    ``{"type": "json_object", "schema": ...}``, which decodes under the schema's grammar."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    schema: Any = None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    elif kind == "json_object":
        schema = response_format.get("schema")
    else:
        return None
    if not isinstance(schema, dict):
        return {"type": "json_object"}
    return {
        "type": "json_object",
        "schema": bound_strings(schema, string_budget(schema, max_tokens)),
    }


# -- tool calls -----------------------------------------------------------------------------


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """LangChain tools (or tool dicts) as OpenAI function definitions."""
    return [convert_to_openai_tool(tool) for tool in tools]


def choice_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The reply's JSON schema: one call of an offered tool, or the final answer."""
    options: list[dict[str, Any]] = []
    for tool in tools:
        function = tool["function"]
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": function["name"]}, "arguments": parameters},
                "required": ["tool", "arguments"],
            }
        )
    options.append(
        {"type": "object", "properties": {ANSWER: {"type": "string"}}, "required": [ANSWER]}
    )
    return {"anyOf": options}


def tools_note(tools: list[dict[str, Any]]) -> SystemMessage:
    """What the model is told about the tools and the reply's form."""
    lines = []
    for tool in tools:
        function = tool["function"]
        arguments = ", ".join((function.get("parameters") or {}).get("properties") or {})
        lines.append(f"- {function['name']}({arguments}): {function.get('description') or ''}")
    return SystemMessage(
        "You can call one of these tools:\n"
        + "\n".join(lines)
        + '\nReply in JSON: {"tool": NAME, "arguments": {...}} to call a tool, or '
        + '{"answer": TEXT} when you can answer.'
    )


def with_tools(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> list[BaseMessage]:
    """``messages`` with the tools note after the system messages."""
    head = 0
    while head < len(messages) and isinstance(messages[head], SystemMessage):
        head += 1
    return [*messages[:head], tools_note(tools), *messages[head:]]


def as_reply(text: str, number: int) -> tuple[str, list[dict[str, Any]]]:
    """(content, tool calls) of a reply decoded under `choice_schema`. Text that does not
    parse (a reply cut at max_tokens) is returned as the answer."""
    try:
        value = json.loads(text, strict=False)
    except json.JSONDecodeError:
        return text, []
    if isinstance(value, dict) and isinstance(value.get("tool"), str):
        arguments = value.get("arguments")
        call = {
            "name": value["tool"],
            "args": arguments if isinstance(arguments, dict) else {},
            "id": f"call_{number}",
            "type": "tool_call",
        }
        return "", [call]
    if isinstance(value, dict) and isinstance(value.get(ANSWER), str):
        return value[ANSWER], []
    return text, []


def call_text(message: AIMessage) -> str:
    """An earlier reply that called a tool, as the JSON the model wrote (history stays in
    the form the model is asked for)."""
    call = message.tool_calls[0]
    return json.dumps({"tool": call["name"], "arguments": call["args"]})
