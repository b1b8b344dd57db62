"""`TestModel` and `ScriptedModel` (see the package docstring)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
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

from loopengt.errors import LoopengtError
from loopengt.providers.testing.schema import sample_json

TRANSFER_PREFIX = "transfer_to_"  # loopengt.compilers.handoff names its transfer tools so
SNIPPET_CHARS = 40
Reply = str | BaseMessage | Callable[[list[BaseMessage]], str | BaseMessage]


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


class _TestChatModel(BaseChatModel):
    """What both test models share: traces name them as provider `test`."""

    model_name: str = "test"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "test"
        params["ls_model_name"] = self.model_name
        return params


class TestModel(_TestChatModel):
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


class ScriptedModel(_TestChatModel):
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
