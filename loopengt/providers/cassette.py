"""Record/replay of model calls ("cassettes"), for CI and regression tests.

Recording wraps each agent's chat model: every call goes to the real model and is appended,
with the step that made it, to a YAML file rewritten atomically after each call. Replaying
answers every call from that file with no model at all. A call is matched by its step (the
LangGraph node running it) and its request content — messages, tools, response format — so
parallel branches of one step find their own answers whatever order they run in. Secrets are
redacted before anything is written.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from loopengt.errors import UserInputError
from loopengt.graph.calls import ABANDONED
from loopengt.graph.structured import supports_json_schema
from loopengt.redaction import redact
from loopengt.serialization import jsonable, write_atomically

VERSION = 1
_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
Json = dict[str, Any]


# -- requests and responses as plain data -------------------------------------------------------


def tool_call_record(call: Any) -> Json:
    return {"name": call["name"], "args": call["args"], "id": call.get("id")}


def message_record(message: BaseMessage) -> Json:
    record: Json = {"role": _ROLES.get(message.type, message.type), "content": message.content}
    if isinstance(message, AIMessage) and message.tool_calls:
        record["tool_calls"] = [tool_call_record(c) for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        record["tool_call_id"] = message.tool_call_id
    return record


def tool_records(tools: Sequence[Any]) -> list[Json]:
    """Name, description and parameter schema of each tool, as the model is shown them."""
    functions = [convert_to_openai_tool(tool)["function"] for tool in tools]
    return [
        {
            "name": f["name"],
            "description": f.get("description", ""),
            "parameters": f.get("parameters", {}),
        }
        for f in functions
    ]


def request_record(messages: list[BaseMessage], tools: list[Json], kwargs: Json) -> Json:
    request: Json = {"messages": [message_record(m) for m in messages]}
    if tools:
        request["tools"] = tools
    if kwargs.get("response_format") is not None:
        request["response_format"] = kwargs["response_format"]
    return redact(jsonable(request))  # type: ignore[no-any-return]  # a dict stays a dict


def response_record(reply: BaseMessage) -> Json:
    response: Json = {"content": reply.content}
    if isinstance(reply, AIMessage):
        if reply.tool_calls:
            response["tool_calls"] = [tool_call_record(c) for c in reply.tool_calls]
        if reply.usage_metadata:
            response["usage_metadata"] = dict(reply.usage_metadata)
    model_name = reply.response_metadata.get("model_name")
    if model_name:
        response["model_name"] = model_name
    return redact(jsonable(response))  # type: ignore[no-any-return]  # a dict stays a dict


def replayed_message(response: Json) -> AIMessage:
    model_name = response.get("model_name")
    return AIMessage(
        content=response.get("content") or "",
        tool_calls=response.get("tool_calls") or [],
        usage_metadata=response.get("usage_metadata"),
        response_metadata={"model_name": model_name} if model_name else {},
    )


def matches(recorded: Json, actual: Json) -> bool:
    return _without_method(recorded, actual) == _without_method(actual, actual)


def _without_method(request: Json, replayed: Json) -> Json:
    """``request`` without how it asked for JSON. The replaying model asks by `json_schema`;
    the recording may have asked by another method (`[llm] structured_output`, or what
    `auto` fell back to): `json_object`, a forced tool named like the response format, or
    the prompt alone. Whatever the method, structured output puts the schema in the
    messages, so they still tell a changed schema apart."""
    asked = (replayed.get("response_format") or {}).get("json_schema")
    if not isinstance(asked, dict):
        return request
    kept = {k: v for k, v in request.items() if k not in ("response_format", "tools")}
    tools = [t for t in request.get("tools", []) if t["name"] != asked.get("name")]
    return {**kept, "tools": tools} if tools else kept


def excerpt(recorded: Any, actual: Any) -> str:
    """Both values around their first difference, each on one line."""
    if not (isinstance(recorded, str) and isinstance(actual, str)):
        return f"recorded {json.dumps(recorded)[:80]}, now {json.dumps(actual)[:80]}"
    same = next((i for i, (a, b) in enumerate(zip(recorded, actual, strict=False)) if a != b), None)
    start = max(0, (min(len(recorded), len(actual)) if same is None else same) - 20)

    def show(text: str) -> str:
        part = json.dumps(text[start : start + 60])
        return ("..." if start else "") + part + ("..." if len(text) > start + 60 else "")

    return f"recorded {show(recorded)}, now {show(actual)}"


def difference(recorded: Json, actual: Json) -> str:
    """What differs between two requests, in a few words."""
    old, new = recorded["messages"], actual["messages"]
    for number, (r, a) in enumerate(zip(old, new, strict=False), start=1):
        for key in ("role", "content", "tool_calls", "tool_call_id"):
            if r.get(key) != a.get(key):
                what = excerpt(r.get(key), a.get(key))
                return f"message {number} ({a.get('role')}) {key} differs: {what}"
    if len(old) != len(new):
        return f"{len(new)} messages instead of the recorded {len(old)}"
    old_tools, new_tools = recorded.get("tools", []), actual.get("tools", [])
    if [t["name"] for t in old_tools] != [t["name"] for t in new_tools]:
        names = [[t["name"] for t in tools] for tools in (old_tools, new_tools)]
        return f"the tools differ: recorded {names[0]}, now {names[1]}"
    changed = next((n["name"] for o, n in zip(old_tools, new_tools, strict=False) if o != n), None)
    if changed:
        return f"the description or schema of tool {changed!r} differs"
    return "the response_format (output schema) differs"


# -- the cassette file --------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # repeated values are written out, never as &anchors


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # multi-line text as a `|` block (PyYAML falls back to quotes where a block cannot hold it)
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


_Dumper.add_representer(str, _str)


class Cassette:
    """The calls of one run, for recording (``Cassette.record``) or replaying (``.load``)."""

    def __init__(self, path: Path, *, replaying: bool, spec: str, calls: list[Json]) -> None:
        self.path = path
        self.replaying = replaying
        self.spec = spec
        self.calls = calls
        self.recorded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._lock = threading.Lock()
        self._used: set[int] = set()
        self._wrappers: dict[int, RecordingChatModel] = {}
        self._replayer: ReplayingChatModel | None = None

    @classmethod
    def record(cls, path: str | os.PathLike[str], spec: str, *, append: bool = False) -> Cassette:
        """``append``: keep the calls already in the file (a resumed run goes on recording)."""
        path = Path(path)
        if append and path.is_file():
            existing = cls.load(path)
            return cls(path, replaying=False, spec=spec, calls=existing.calls)
        # an unwritable path fails before the run starts; an existing cassette is kept until
        # the first call is recorded (a run that fails to start must not wipe it)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"cannot write cassette {path}: {exc.strerror}") from None
        writable = os.access(path if path.exists() else path.parent, os.W_OK)
        if not writable or path.is_dir():
            raise UserInputError(f"cannot write cassette {path}: not writable")
        return cls(path, replaying=False, spec=spec, calls=[])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Cassette:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserInputError(f"cassette {path} not found; record one with --record") from None
        except OSError as exc:
            raise UserInputError(f"cannot read cassette {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            why = getattr(exc, "problem", None) or "unreadable"
            raise UserInputError(f"cassette {path} is not valid YAML{where}: {why}") from None
        problem = _problem(doc)
        if problem:
            raise UserInputError(f"cassette {path} is not a loopengt cassette: {problem}")
        return cls(path, replaying=True, spec=str(doc.get("spec", "")), calls=doc["calls"])

    def save(self) -> None:
        doc: Json = {"version": VERSION, "spec": self.spec, "recorded_at": self.recorded_at}
        doc["calls"] = self.calls
        text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        try:
            write_atomically(self.path, text)
        except OSError as exc:
            raise UserInputError(f"cannot write cassette {self.path}: {exc.strerror}") from None

    # -- the models the compiler hands to agents ---------------------------------------------
    def model(self, inner: BaseChatModel | None = None) -> BaseChatModel:
        """Replaying: the one shared replaying model. Recording: ``inner`` wrapped."""
        if self.replaying:
            if self._replayer is None:
                self._replayer = ReplayingChatModel(cassette=self)
            return self._replayer
        assert inner is not None, "a recording cassette wraps a model"
        if id(inner) not in self._wrappers:  # the wrapper holds inner: its id stays unique
            mode = supports_json_schema(inner)
            self._wrappers[id(inner)] = RecordingChatModel(
                cassette=self, inner=inner, json_schema_mode=mode
            )
        return self._wrappers[id(inner)]

    def add(self, step: str, request: Json, response: Json) -> None:
        with self._lock:
            call = 1 + sum(1 for c in self.calls if c["step"] == step)
            self.calls.append(
                {"step": step, "call": call, "request": request, "response": response}
            )
            self.save()

    def answer(self, step: str, request: Json) -> Json:
        """The recorded response to ``request``: the first unused call of ``step`` with an
        equal request; a ``UserInputError`` naming the step when there is none."""
        with self._lock:
            mine = [i for i, c in enumerate(self.calls) if c["step"] == step]
            unused = [i for i in mine if i not in self._used]
            if mine and not unused:  # every answer of this step was given: the graph runs again
                self._used.difference_update(mine)
                unused = mine
            call = len(mine) - len(unused) + 1
            for index in unused:
                if matches(self.calls[index]["request"], request):
                    self._used.add(index)
                    return self.calls[index]["response"]  # type: ignore[no-any-return]
        if not mine:
            why = "the cassette has no model call for this step"
        else:
            why = difference(self.calls[unused[0]]["request"], request)
        raise UserInputError(  # the cassette is the run's input: replaying again fails again
            f"replay of {self.path.name}: step {step!r} call {call} does not match the "
            f"cassette ({why}); re-record with --record"
        )


def _problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "expected a mapping with 'version' and 'calls'"
    if doc.get("version") != VERSION:
        return f"version {doc.get('version')!r} is not supported (expected {VERSION})"
    calls = doc.get("calls")
    if not isinstance(calls, list):
        return "'calls' is missing or not a list"
    for number, call in enumerate(calls, start=1):
        ok = isinstance(call, dict) and isinstance(call.get("step"), str)
        ok = ok and isinstance(call.get("request"), dict) and isinstance(call.get("response"), dict)
        if not ok or not isinstance(call["request"].get("messages"), list):
            return f"call {number} needs 'step', 'request' (with 'messages') and 'response'"
    return None


def open_cassette(
    spec: str,
    record: str | os.PathLike[str] | Cassette | None,
    replay: str | os.PathLike[str] | None,
) -> Cassette | None:
    """The cassette for ``compile_spec``'s ``record=`` / ``replay=`` (at most one of them)."""
    if record is not None and replay is not None:
        raise UserInputError("record and replay cannot be combined: choose one cassette")
    if replay is not None:
        return Cassette.load(replay)
    if isinstance(record, Cassette):
        return record
    return Cassette.record(record, spec) if record is not None else None


# -- chat models ----------------------------------------------------------------------------------


class _CassetteModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    cassette: Cassette
    bound_tool_records: list[Json] = Field(default_factory=list)
    # read by structured.supports_json_schema: whether to ask for `response_format`
    json_schema_mode: bool = True

    @staticmethod
    def step(run_manager: Any) -> str:
        # LangGraph puts the running node's name in the config metadata of calls made in it
        metadata = run_manager.metadata if run_manager else {}
        return str(metadata.get("langgraph_node") or "(outside a graph)")


class RecordingChatModel(_CassetteModel):
    """Calls ``inner`` and appends the request and response to the cassette."""

    inner: Runnable[Any, Any]

    @property
    def _llm_type(self) -> str:
        return "loopengt-recording"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        bound = self.inner.bind_tools(tools, **kwargs)  # type: ignore[attr-defined]
        return self.model_copy(update={"inner": bound, "bound_tool_records": tool_records(tools)})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = request_record(messages, self.bound_tool_records, kwargs)
        # the inner call runs in an empty context: this wrapper's own run already reports the
        # call (with the inner reply, its usage and model name), so traces count it once.
        # `{"callbacks": []}` is not enough: a tool-bound model merges its config with the
        # node's, which LangGraph puts in the context, and keeps the node's callbacks
        call = functools.partial(self.inner.invoke, messages, stop=stop, **kwargs)
        reply = contextvars.Context().run(call)
        return self._recorded(run_manager, request, reply)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """`_generate` awaiting the inner model (the run's async path holds no thread)."""
        request = request_record(messages, self.bound_tool_records, kwargs)
        call = self.inner.ainvoke(messages, stop=stop, **kwargs)
        # a task of its own, in an empty context (see `_generate`); cancelling this call (a
        # step timeout) cancels it too, so an abandoned call is never recorded
        reply = await asyncio.create_task(call, context=contextvars.Context())
        return self._recorded(run_manager, request, reply)

    def _recorded(self, run_manager: Any, request: Json, reply: Any) -> ChatResult:
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        abandoned = ABANDONED.get()
        if abandoned is None or not abandoned.is_set():  # only answers the run uses
            self.cassette.add(self.step(run_manager), request, response_record(reply))
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ReplayingChatModel(_CassetteModel):
    """Answers every call from the cassette; no model is ever called."""

    @property
    def _llm_type(self) -> str:
        return "loopengt-replay"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        return self.model_copy(update={"bound_tool_records": tool_records(tools)})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = request_record(messages, self.bound_tool_records, kwargs)
        response = self.cassette.answer(self.step(run_manager), request)
        return ChatResult(generations=[ChatGeneration(message=replayed_message(response))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # the answer is in memory: no thread needed
        return self._generate(messages, stop, run_manager, **kwargs)  # type: ignore[arg-type]
