"""Chat models for tests: run a spec deterministically, with no key, no server and no weights.

Users' CI, templates and evals need a model that always answers the same way and answers
every kind of call a spec makes: plain text, structured output (supervisor routing,
evaluator verdicts, judge gates, `output_schema` steps), tool calls and handoffs. Two
models cover that, after pydantic-ai's ``TestModel`` and the openai-agents scripted fake:

- ``TestModel`` needs no script: it derives a short reply from the request, generates JSON
  valid against the requested schema, and calls the tools it is offered once.
- ``ScriptedModel`` answers from a list, in order, and records every request, for tests
  that need exact replies (a verdict that fails once, a particular route, an error).

``test_model(name)`` builds a ``TestModel`` from the options of a ``test:...`` model
string, so a spec or the CLI can name it (``model: test``, ``--model test:delay=0.05``).

Both are real ``BaseChatModel`` subclasses with an async path that awaits its delay rather
than blocking, because many runs share one event loop (evals, the MCP server).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import math
import re
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import ToolCall
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, PrivateAttr

from loopengt.errors import LoopengtError, UserInputError

__all__ = [
    "ScriptExhaustedError",
    "ScriptedModel",
    "TestModel",
    "sample_json",
    "test_model",
]

TRANSFER_PREFIX = "transfer_to_"  # loopengt.compilers.handoff names its transfer tools so
SNIPPET_CHARS = 40
Reply = str | BaseMessage | Callable[[list[BaseMessage]], str | BaseMessage]


# -- JSON values for a JSON Schema ------------------------------------------------------------

MAX_DEPTH = 40  # nested schemas deeper than this are unsatisfiable recursion: give up
FULL_DEPTH = 6  # deeper than this, only required properties and minItems are generated
FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "test@example.com",
    "uri": "https://example.com/test",
    "url": "https://example.com/test",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}
_POOL = "a" + string.ascii_letters + string.digits + " " + string.punctuation
_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def sample_json(schema: Mapping[str, Any]) -> Any:
    """A JSON value valid against ``schema``, the same every time.

    What ``TestModel`` answers a structured-output request or a tool's parameters with:
    ``const``; an ``enum``'s first value; the first option of ``anyOf``/``oneOf`` that is not
    null; ``allOf`` merged; local ``$ref``s followed; objects with every property (required
    or not); strings ``"test <property>"`` fitted to ``minLength``/``maxLength``, or made
    from a simple ``pattern``, or a sample of a common ``format``; the smallest number in
    ``minimum``/``maximum`` (0 when unbounded); ``true``; arrays of ``minItems`` items (at
    least one), each slightly different so ``uniqueItems`` holds. Schemas beyond that (a
    ``pattern`` with lookarounds, ``not``, ``if``/``then``) may get a value that does not
    validate; ``TestModel(structured=...)`` or ``ScriptedModel`` then give the exact reply.
    """
    return _Sampler(dict(schema)).value(dict(schema), key=None, variant=0, depth=0)


class _Sampler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def value(self, schema: Any, key: str | None, variant: int, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return None
        if schema is True or not isinstance(schema, dict):
            return self.string({}, key, variant)
        schema = self.flatten(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][variant % len(schema["enum"])]
        kind = self.kind(schema)
        if kind == "object":
            return self.object(schema, variant, depth)
        if kind == "array":
            return self.array(schema, key, depth)
        if kind in ("integer", "number"):
            return self.number(schema, kind == "integer", variant)
        if kind == "boolean":
            return variant != 1
        if kind == "null":
            return None
        return self.string(schema, key, variant)

    def flatten(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """``schema`` with its ``$ref``, ``allOf`` and first ``anyOf``/``oneOf`` option merged
        in, so what is left is one plain schema."""
        for _ in range(MAX_DEPTH):
            if isinstance(schema.get("$ref"), str):
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = _merge(self.resolve(schema["$ref"]), rest)
            elif isinstance(schema.get("allOf"), list):
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    if isinstance(part, dict):
                        rest = _merge(rest, part)
                schema = rest
            else:
                options = next(
                    (schema[k] for k in ("anyOf", "oneOf") if isinstance(schema.get(k), list)),
                    None,
                )
                if not options:
                    return schema
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                usable = [o for o in options if isinstance(o, dict)]
                chosen = next((o for o in usable if not _is_null(o)), usable[0] if usable else {})
                schema = _merge(rest, chosen)
        return schema

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"cannot follow $ref {ref!r}: only local references are supported")
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return dict(node) if isinstance(node, dict) else {}

    @staticmethod
    def kind(schema: dict[str, Any]) -> str:
        declared = schema.get("type")
        if isinstance(declared, list):
            declared = next((t for t in declared if t != "null"), declared[0] if declared else None)
        if isinstance(declared, str):
            return declared
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    def object(self, schema: dict[str, Any], variant: int, depth: int) -> dict[str, Any]:
        found = schema.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        wanted = list(required)
        if depth < FULL_DEPTH:  # optional ones too, but a recursive schema must end
            wanted += [name for name in properties if name not in required]
        limit = _count(schema, "maxProperties")
        if limit is not None:
            wanted = wanted[: max(limit, len(required))]
        extra = schema.get("additionalProperties", True)
        other = extra if isinstance(extra, dict) else {}
        out: dict[str, Any] = {}
        for name in wanted:
            out[name] = self.value(properties.get(name, other), name, variant, depth + 1)
        least = _count(schema, "minProperties") or 0
        number = 0
        while len(out) < least and extra is not False:
            number += 1
            if f"key{number}" not in out:
                out[f"key{number}"] = self.value(other, f"key{number}", variant, depth + 1)
        return out

    def array(self, schema: dict[str, Any], key: str | None, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix if isinstance(prefix, list) else []
        count = max(_count(schema, "minItems") or 0, len(prefix), 1 if depth < FULL_DEPTH else 0)
        if items is False:
            count = min(count, len(prefix))
        most = _count(schema, "maxItems")
        if most is not None:
            count = min(count, most)
        name = _singular(key)
        return [
            self.value(prefix[i] if i < len(prefix) else items, name, i, depth + 1)
            for i in range(count)
        ]

    @staticmethod
    def number(schema: dict[str, Any], integer: bool, variant: int) -> int | float:
        low, high = _number(schema, "minimum"), _number(schema, "maximum")
        ex_low, ex_high = _number(schema, "exclusiveMinimum"), _number(schema, "exclusiveMaximum")
        if schema.get("exclusiveMinimum") is True:  # draft 4: a flag on minimum
            ex_low, low = low, None
        if schema.get("exclusiveMaximum") is True:
            ex_high, high = high, None

        def fits(x: float) -> bool:
            return (
                (low is None or x >= low)
                and (ex_low is None or x > ex_low)
                and (high is None or x <= high)
                and (ex_high is None or x < ex_high)
            )

        lower: list[float] = [] if low is None else [low]
        if ex_low is not None:
            uppers = [h for h in (high, ex_high) if h is not None]
            gap = min(1.0, (min(uppers) - ex_low) / 2) if uppers else 1.0
            lower.append(math.floor(ex_low) + 1 if integer else ex_low + gap)
        start: float
        if lower:
            start = math.ceil(max(lower)) if integer else max(lower)
        elif fits(0):
            start = 0
        else:  # only an upper bound, below zero
            start = high if high is not None else (ex_high or 0) - 1
            start = math.floor(start) if integer else start
        multiple = _number(schema, "multipleOf")
        step = multiple if multiple is not None and multiple > 0 else 1
        if step != 1:
            start = math.ceil(start / step) * step
        if variant and fits(start + variant * step):
            start += variant * step
        if integer or float(start).is_integer():
            return int(start)
        return float(start)

    @staticmethod
    def string(schema: dict[str, Any], key: str | None, variant: int) -> str:
        least = _count(schema, "minLength") or 0
        most = _count(schema, "maxLength")
        found = schema.get("pattern")
        pattern = found if isinstance(found, str) else None

        def ok(text: str) -> bool:
            if len(text) < least or (most is not None and len(text) > most):
                return False
            return pattern is None or re.search(pattern, text) is not None

        def fit(text: str) -> str:
            if len(text) < least:
                text += "x" * (least - len(text))
            return text if most is None else text[:most]

        base = f"test {key}" if key else "test"
        if variant:
            base += f" {variant + 1}"
        candidates: list[str] = []
        if pattern is not None:
            for repeat in (1, 0, least, most or least):
                made = _regex_sample(pattern, repeat)
                if made is not None:
                    candidates += [made, fit(made)]
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in FORMATS:
            candidates.append(FORMATS[fmt])
        candidates += [fit(base), fit("a"), fit("0"), "", " "]
        return next((c for c in candidates if ok(c)), candidates[0])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Two schemas that must both hold, as one (properties and required are combined)."""
    merged = {**base, **extra}
    if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
        merged["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return merged


def _is_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or ("const" in schema and schema["const"] is None)


def _number(schema: dict[str, Any], key: str) -> float | None:
    x = schema.get(key)
    return x if isinstance(x, int | float) and not isinstance(x, bool) else None


def _count(schema: dict[str, Any], key: str) -> int | None:
    x = schema.get(key)
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None


def _singular(key: str | None) -> str | None:
    """The name of one item of a list property: "facts" -> "fact"."""
    if key and key.endswith("s") and not key.endswith("ss") and len(key) > 2:
        return key[:-1]
    return key


def _regex_sample(pattern: str, repeat: int) -> str | None:
    """A string the regex ``pattern`` matches, built from its parse tree (``repeat`` times
    for open quantifiers); None for what this does not handle. Checked by the caller."""
    try:
        parser: Any = importlib.import_module("re._parser")
        tree = parser.parse(pattern)
        return _emit(list(tree), max(repeat, 0), {})
    except Exception:  # private module, unusual constructs: the caller falls back
        return None


def _emit(items: list[Any], repeat: int, groups: dict[int, str]) -> str:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_pick_in(arg))
        elif name == "CATEGORY":
            out.append(next(c for c in _POOL if re.fullmatch(_CATEGORIES[str(arg)], c)))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            times = min(max(low, repeat), high)
            out.append("".join(_emit(list(sub), repeat, groups) for _ in range(times)))
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            group, sub = (arg[0], arg[-1]) if name == "SUBPATTERN" else (None, arg)
            text = _emit(list(sub), repeat, groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif name == "BRANCH":
            out.append(_emit(list(arg[1][0]), repeat, groups))
        elif name == "GROUPREF":
            out.append(groups.get(arg, ""))
        elif name not in ("AT", "ASSERT", "ASSERT_NOT"):
            raise ValueError(f"unsupported regex construct {name}")
    return "".join(out)


def _pick_in(items: list[Any]) -> str:
    """A character of the class ``[...]`` whose parsed ``items`` are given."""
    negated = any(str(op) == "NEGATE" for op, _ in items)

    def member(c: str) -> bool:
        for op, arg in items:
            name = str(op)
            if name == "LITERAL" and c == chr(arg):
                return True
            if name == "RANGE" and arg[0] <= ord(c) <= arg[1]:
                return True
            if name == "CATEGORY" and re.fullmatch(_CATEGORIES[str(arg)], c):
                return True
        return False

    if not negated:  # a class's own first member reads better than a pool character
        op, arg = items[0]
        if str(op) == "LITERAL":
            return chr(arg)
        if str(op) == "RANGE":
            return chr(arg[0])
    return next(c for c in _POOL if member(c) != negated)


# -- shared by both models ---------------------------------------------------------------------


def _words(message: BaseMessage) -> int:
    """Whitespace-separated words of a message, tool-call arguments included."""
    count = len(str(message.text).split())
    for call in getattr(message, "tool_calls", None) or []:
        count += len(call["name"].split()) + len(json.dumps(call["args"]).split())
    return count


def _usage(messages: Sequence[BaseMessage], reply: AIMessage) -> UsageMetadata:
    tokens_in = sum(_words(m) for m in messages)
    tokens_out = _words(reply)
    return UsageMetadata(
        input_tokens=tokens_in, output_tokens=tokens_out, total_tokens=tokens_in + tokens_out
    )


def _last_human(messages: Sequence[BaseMessage]) -> str:
    return next((str(m.text) for m in reversed(messages) if isinstance(m, HumanMessage)), "")


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _as_ai(reply: str | BaseMessage, model_name: str) -> AIMessage:
    if isinstance(reply, AIMessage):
        message = reply.model_copy(deep=True)  # LangChain sets ids on what it returns
    else:
        text = reply if isinstance(reply, str) else str(reply.text)
        message = AIMessage(content=text)
    message.response_metadata.setdefault("model_name", model_name)
    return message


def _result(message: AIMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


# -- TestModel -----------------------------------------------------------------------------------


class TestModel(BaseChatModel):
    """A deterministic chat model that needs no script, for running any spec in CI.

    Per call, in this order:

    - tools bound and none called yet in this turn (the messages since the last human
      message): call each offered tool once (see ``call_tools``), arguments generated from
      its parameter schema by ``sample_json``;
    - ``response_format`` asks for a JSON schema (how loopengt's structured output asks):
      reply with ``structured``, or JSON generated from the schema;
    - else reply ``text`` if set; after tool calls, a JSON object of each tool's result by
      tool name; otherwise ``test reply to "<start of the last human message>" #<hash>``,
      the hash telling apart prompts that start alike;
    - a handoff transfer (see ``transfers``) goes with that final reply.

    Nothing is random, so a run gives the same outputs, tool calls and token counts each
    time. Usage is counted in words, so budget policies have something to add up.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name
    json_schema_mode: ClassVar[bool] = True
    """Read by loopengt's structured output: ask this model with ``response_format``."""
    tool_calling: ClassVar[bool] = True
    """Read by loopengt's model check: agents with tools may use this model."""

    text: str | None = None
    """A fixed reply for every text answer, also after tool calls (None: derived from the
    request). Structured-output calls still get JSON."""
    structured: Any = None
    """A fixed value to answer every structured-output call with, unchecked against the
    schema, e.g. ``{"next": "FINISH"}`` for a supervisor (None: generated from the schema)."""
    call_tools: Literal["all", "none"] | list[str] = "all"
    """Which offered tools to call once per turn: ``"all"``, ``"none"``, or these names
    (names not offered are skipped). Handoff transfers are governed by ``transfers``."""
    transfers: bool | list[str] = False
    """Handoff ``transfer_to_<agent>`` tools: False never calls one, so a handoff run ends
    with its entry agent; a list of agent names hands off to the first of them offered
    (``["billing"]``: triage hands to billing, who is not offered itself and answers);
    True hands off to the first agent offered, which loops until ``max_handoffs``."""
    delay: float = 0.0
    """Seconds each call takes: slept in threads, awaited under asyncio."""
    usage: bool = True
    """Report ``usage_metadata``: input and output tokens as whitespace-separated words."""
    model_name: str = "test"
    """The name in ``response_metadata`` and traces; a ``[prices]`` entry for it in
    ``.loopengt/config.toml`` gives calls a cost, to test cost budgets."""

    @property
    def _llm_type(self) -> str:
        return "loopengt-test"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "text": self.text, "delay": self.delay}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "test"
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bound like a provider's model: the tools, in OpenAI format, arrive as ``tools``."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay > 0:
            time.sleep(self.delay)
        return _result(self.reply(messages, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return _result(self.reply(messages, **kwargs))

    def reply(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AIMessage:
        """The reply to ``messages`` with the call options ``kwargs`` (``tools``,
        ``tool_choice``, ``response_format``); what ``invoke`` returns, minus run ids."""
        messages = list(messages)
        tools = [t for t in kwargs.get("tools") or [] if isinstance(t, dict)]
        start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
        turn = messages[start + 1 :]
        made = [c for m in turn if isinstance(m, AIMessage) for c in m.tool_calls]
        if not made:
            calls = self._tool_calls(tools, kwargs.get("tool_choice"), len(messages))
            if calls:
                return self._message("", calls, messages)
        schema = _requested_schema(kwargs.get("response_format"))
        if schema is not None:
            value = self.structured if self.structured is not None else sample_json(schema)
            content = json.dumps(value, ensure_ascii=False)
        elif self.text is not None:
            content = self.text
        elif made:
            names = {c["id"]: c["name"] for c in made}
            results: dict[str, str] = {}
            for m in turn:
                if isinstance(m, ToolMessage):
                    results[names.get(m.tool_call_id, m.name or "tool")] = str(m.text)
            content = json.dumps(results, ensure_ascii=False)
        else:
            asked = _last_human(messages)
            digest = hashlib.sha256(asked.encode()).hexdigest()[:6]
            content = f'test reply to "{_snippet(asked)}" #{digest}'
        transfer = [] if made and self._made_transfer(made) else self._transfer(tools, messages)
        return self._message(content, transfer, messages)

    def _tool_calls(
        self, tools: list[dict[str, Any]], choice: Any, position: int
    ) -> list[ToolCall]:
        offered = [t["function"] for t in tools if "function" in t]
        plain = [f for f in offered if not f["name"].startswith(TRANSFER_PREFIX)]
        forced = _forced_tool(choice)
        if choice == "none":
            chosen = []
        elif forced is not None:
            chosen = [f for f in offered if f["name"] == forced]
        elif self.call_tools == "all":
            chosen = plain
        elif self.call_tools == "none":
            chosen = []
        else:
            chosen = [f for f in plain if f["name"] in self.call_tools]
        if not chosen and choice in ("any", "required", True) and offered:
            chosen = offered[:1]
        return [self._call(f, position, i) for i, f in enumerate(chosen)]

    def _transfer(self, tools: list[dict[str, Any]], messages: list[BaseMessage]) -> list[ToolCall]:
        if self.transfers is False:
            return []
        offered = {
            t["function"]["name"][len(TRANSFER_PREFIX) :]: t["function"]
            for t in tools
            if t.get("function", {}).get("name", "").startswith(TRANSFER_PREFIX)
        }
        wanted = list(offered) if self.transfers is True else self.transfers
        target = next((name for name in wanted if name in offered), None)
        if target is None:
            return []
        return [self._call(offered[target], len(messages), 0)]

    @staticmethod
    def _made_transfer(made: list[ToolCall]) -> bool:
        return any(c["name"].startswith(TRANSFER_PREFIX) for c in made)

    @staticmethod
    def _call(function: dict[str, Any], position: int, index: int) -> ToolCall:
        args = sample_json(function.get("parameters") or {"type": "object"})
        return ToolCall(
            name=function["name"],
            args=args if isinstance(args, dict) else {},
            id=f"test_call_{position}_{index}",
            type="tool_call",
        )

    def _message(
        self, content: str, calls: list[ToolCall], messages: list[BaseMessage]
    ) -> AIMessage:
        message = AIMessage(
            content=content,
            tool_calls=calls,
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": "tool_calls" if calls else "stop",
            },
        )
        if self.usage:
            message.usage_metadata = _usage(messages, message)
        return message


def _requested_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` asks for: OpenAI's ``json_schema`` form (as
    loopengt's structured output sends it), or a pydantic class."""
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema") or {}
        schema = inner.get("schema") if isinstance(inner, dict) else None
        return dict(schema) if isinstance(schema, dict) else {"type": "object"}
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return {"type": "object"}
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    return None


def _forced_tool(choice: Any) -> str | None:
    """The tool a ``tool_choice`` names, if it names one."""
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        return str(name) if name else None
    if isinstance(choice, str) and choice not in ("auto", "none", "any", "required"):
        return choice
    return None


# -- ScriptedModel -------------------------------------------------------------------------------


class ScriptExhaustedError(LoopengtError):
    """A ``ScriptedModel`` was called more often than it has replies.

    A ``LoopengtError``, so a graph ends the step with this message rather than retrying."""


class ScriptedModel(BaseChatModel):
    """Answers from a script, in order, and records every request: for tests that need exact
    replies (a verdict that fails once, a particular route, a tool call, an error).

    Each call takes the next entry of ``raises`` (raised) until those are used, then the
    next of ``replies``: a string, a message (``AIMessage`` with ``tool_calls`` plays a
    tool-calling model), or a callable computing one from the messages. The entry is taken
    when the call arrives, under a lock, so parallel branches (threads) and concurrent
    ``ainvoke`` calls each get their own; a callable reply keeps answers deterministic when
    the order in which parallel steps call is not. Past the script, ``fallback`` answers, or
    the call fails with ``ScriptExhaustedError``.
    """

    json_schema_mode: ClassVar[bool] = True
    """Read by loopengt's structured output: requests carry ``response_format`` (see
    ``options``); the reply is still the scripted one."""
    tool_calling: ClassVar[bool] = True
    """Read by loopengt's model check: agents with tools may use this model."""

    replies: list[Reply] = Field(default_factory=list)
    """The replies, in order: strings, messages, or callables ``messages -> str | message``."""
    raises: list[BaseException] = Field(default_factory=list)
    """Exceptions raised, in order, by the first calls, before any reply is used."""
    fallback: Reply | None = None
    """What every call past the script answers (e.g. a callable echoing the step); None:
    such a call raises ``ScriptExhaustedError``."""
    delay: float = 0.0
    """Seconds each call takes: slept in threads, awaited under asyncio."""
    model_name: str = "test"
    """The name put in ``response_metadata`` of replies that carry none."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _requests: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _options: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _bound_tools: list[str] = PrivateAttr(default_factory=list)
    _used: int = PrivateAttr(default=0)

    @property
    def requests(self) -> list[list[BaseMessage]]:
        """The messages of every call, in the order the calls arrived."""
        return self._requests

    @property
    def options(self) -> list[dict[str, Any]]:
        """The call options of every request, aligned with ``requests``: ``tools`` (OpenAI
        format), ``tool_choice``, ``response_format``, ``stop``."""
        return self._options

    @property
    def bound_tools(self) -> list[str]:
        """Names of the tools given to the latest ``bind_tools``."""
        return self._bound_tools

    @property
    def calls(self) -> int:
        """How many times the model was called (raising calls included)."""
        return len(self._requests)

    def prompts(self) -> list[str]:
        """The last human message of each call: where a step's prompt ends up."""
        return [_last_human(messages) for messages in self._requests]

    @property
    def _llm_type(self) -> str:
        return "loopengt-scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "replies": len(self.replies)}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "test"
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Records the tool names; the binding calls this model, so the script goes on."""
        converted = [convert_to_openai_tool(t) for t in tools]
        with self._lock:
            self._bound_tools = [t["function"]["name"] for t in converted]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=converted, **kwargs)

    def _take(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> BaseException | Reply:
        """Record the request and take its script entry, atomically."""
        with self._lock:
            self._requests.append(list(messages))
            self._options.append({**kwargs, "stop": stop} if stop else dict(kwargs))
            call = len(self._requests)
            if call <= len(self.raises):
                return self.raises[call - 1]
            if self._used < len(self.replies):
                self._used += 1
                return self.replies[self._used - 1]
        if self.fallback is not None:
            return self.fallback
        return ScriptExhaustedError(
            f"ScriptedModel: call {call} has no reply: the script has {len(self.replies)} "
            f"{'reply' if len(self.replies) == 1 else 'replies'}"
            + (f" after {len(self.raises)} raises" if self.raises else "")
            + f", all used; the request ends with {_snippet(_last_human(messages), 80)!r}. "
            "Script more replies, or set fallback"
        )

    def _answer(self, entry: BaseException | Reply, messages: list[BaseMessage]) -> ChatResult:
        if isinstance(entry, BaseException):
            raise entry
        reply = entry(messages) if callable(entry) else entry
        return _result(_as_ai(reply, self.model_name))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        entry = self._take(messages, stop, kwargs)
        if self.delay > 0:
            time.sleep(self.delay)
        return self._answer(entry, messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        entry = self._take(messages, stop, kwargs)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return self._answer(entry, messages)


# -- model strings -------------------------------------------------------------------------------

OPTIONS = ("delay", "text", "tools", "transfers")


def test_model(name: str | None = None) -> BaseChatModel:
    """The ``TestModel`` a ``test`` model string names, for the provider registry.

    ``name`` is what follows ``test:`` (the whole ``test:...`` string is accepted too):
    empty for the defaults, else comma-separated options —
    ``delay=SECONDS``, ``tools=all|none|NAME+NAME``, ``transfers=no|yes|AGENT+AGENT``,
    ``text=REPLY``. ``text`` takes the rest of the string, commas included, so it comes
    last: ``test:delay=0.05,text=Looks good, ship it``.
    """
    rest = (name or "").strip()
    if rest == "test" or rest.startswith("test:"):
        rest = rest[len("test") :].lstrip(":")
    settings: dict[str, Any] = {}
    while rest:
        key, eq, value = rest.partition("=")
        key = key.strip()
        if key == "text" and eq:
            settings["text"] = value
            break
        value, _, rest = value.partition(",")
        value = value.strip()
        if not eq or key not in OPTIONS:
            raise UserInputError(
                f"test model option {key!r} is not one of {', '.join(OPTIONS)} "
                "(write e.g. 'test:delay=0.05' or 'test:text=hello')"
            )
        if key == "delay":
            try:
                settings["delay"] = float(value)
            except ValueError:
                raise UserInputError(f"test model delay={value!r} is not a number") from None
            if not settings["delay"] >= 0:
                raise UserInputError(f"test model delay={value!r} must be 0 or more seconds")
        elif key == "tools":
            settings["call_tools"] = value if value in ("all", "none") else _names(value)
        elif key == "transfers":
            flag = _FLAGS.get(value.lower())
            settings["transfers"] = flag if flag is not None else _names(value)
    return TestModel(**settings)


test_model.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function

_FLAGS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split("+") if n.strip()]
