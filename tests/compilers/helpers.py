"""Test doubles shared by the compiler tests: function tools a spec can import by path,
a recording fake chat model, and small helpers to load specs and watch a run."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

from loopengt.spec import LoopSpec, load_spec_text

# -- tools a spec names as `tests.compilers.helpers:ATTR` ------------------------------------


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def explode(text: str) -> str:
    """A tool that always fails, to check the model gets the error text back."""
    raise ValueError(f"cannot handle {text!r}")


# -- fake chat models --------------------------------------------------------------------------


class RecordingFake(FakeMessagesListChatModel):
    """``FakeMessagesListChatModel`` that records the messages of every call.

    ``raises`` are raised, in order, by the first calls (before any response is used);
    ``respond`` computes the reply from the messages instead of taking the next response,
    which keeps replies deterministic when parallel steps call the model concurrently.
    ``bind_tools`` returns the model itself so it can play a tool-calling model.
    """

    responses: list[BaseMessage] = Field(default_factory=list)
    received: list[list[BaseMessage]] = Field(default_factory=list)
    raises: list[BaseException] = Field(default_factory=list)
    respond: Callable[[list[BaseMessage]], BaseMessage] | None = None
    bound_tools: list[str] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        if self.sleep is not None:
            time.sleep(self.sleep)
        if self.raises:
            raise self.raises.pop(0)
        if self.respond is not None:
            return ChatResult(generations=[ChatGeneration(message=self.respond(messages))])
        return super()._generate(messages, stop, run_manager, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        self.bound_tools = [getattr(t, "name", str(t)) for t in tools]
        return self

    @property
    def calls(self) -> int:
        return len(self.received)

    def prompts(self) -> list[str]:
        """The last human message of each call, the part a step's prompt ends up in."""
        return [str(m[-1].content) for m in self.received]


def fake(*replies: str | BaseMessage, **kwargs: Any) -> RecordingFake:
    """A recording fake answering ``replies`` in order (strings become AIMessages)."""
    messages = [AIMessage(content=r) if isinstance(r, str) else r for r in replies]
    return RecordingFake(responses=messages, **kwargs)


TASK = re.compile(r"Your task \((\w+)\)")


def step_echo(**kwargs: Any) -> RecordingFake:
    """A fake that answers ``<step>-done``, the step read from the default prompt."""

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        found = TASK.search(str(messages[-1].content))
        return AIMessage(content=f"{found.group(1) if found else 'unknown'}-done")

    return RecordingFake(respond=respond, **kwargs)


def with_usage(text: str, input_tokens: int, output_tokens: int) -> AIMessage:
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    return AIMessage(content=text, usage_metadata=usage)


# -- specs and runs ----------------------------------------------------------------------------


def spec_of(text: str) -> LoopSpec:
    """A spec written as indented YAML inside a test."""
    return load_spec_text(textwrap.dedent(text), filename="test.yaml")


def node_order(graph: Any, payload: Any, config: Any = None) -> list[str]:
    """Names of the nodes that ran, in order, from the ``updates`` stream."""
    names = []
    for chunk in graph.stream(payload, config, stream_mode="updates"):
        names += [name for name in chunk if name != "__interrupt__"]
    return names


def supersteps(graph: Any, payload: Any, config: Any = None) -> list[set[str]]:
    """The nodes of each superstep, from the ``debug`` stream's task events."""
    steps: dict[int, set[str]] = {}
    for event in graph.stream(payload, config, stream_mode="debug"):
        if event["type"] == "task":
            steps.setdefault(event["step"], set()).add(event["payload"]["name"])
    return [steps[k] for k in sorted(steps)]


def run_streamed(graph: Any, payload: Any) -> tuple[list[str], dict[str, Any]]:
    """(names of the nodes that ran, in order; the final state) of one streamed run."""
    order: list[str] = []
    state: dict[str, Any] = {}
    for mode, chunk in graph.stream(payload, stream_mode=["updates", "values"]):
        if mode == "updates":
            order += list(chunk)
        else:
            state = chunk
    return order, state


def tool_call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    """A model reply that asks for one tool call."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])
