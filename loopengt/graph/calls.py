"""A turn's model and tool calls, and the two drivers that make them.

The agent turn (turn.py) is written once, as a generator that yields each call it needs —
a `ModelCall` or a `ToolUse` — and is sent its result. `drive` makes the calls with
`invoke` under LangGraph's sync API; `adrive` awaits `ainvoke` under `ainvoke`/`astream`,
so no node holds a thread while a model answers and hundreds of runs share one event loop.
A model call that raises is thrown into the generator, which decides (retry, fail the run).

`Calls` belongs to one attempt of a turn: its step-timeout deadline, which every model call
gets what is left of, and its replies, whose token usage the turn writes to the state.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool

from loopengt.errors import LoopengtError
from loopengt.graph.context_budget import ContextBudget
from loopengt.graph.state import Update, add_numbers, new_usage
from loopengt.providers.pricing import cost_usd
from loopengt.redaction import hide_known
from loopengt.serialization import as_text

T = TypeVar("T")


ABANDONED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "abandoned", default=None
)
"""Set around a synchronous model call the step may give up on (`_with_timeout`): a reply
that arrives after the step timed out is not the run's, so a recording cassette leaves it
out (its replay would answer the retry with it)."""


REPLY_GUARD: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "reply_guard", default=None
)
"""Called before a reply is used, by whoever drives the graph (the run engine's lease check:
a process that lost its run must not checkpoint what it was waiting for). LangGraph copies
the context into its node tasks, so the nodes see it."""


class RunTakenOver(LoopengtError):
    """Another process drives this run now: this one stops and writes nothing."""


class IncompleteReplyError(ConnectionError):
    """A reply the connection cut short without an error (retried per policy)."""


class StepTimeoutError(TimeoutError):
    """A step's model call ran past step_timeout_seconds (retried per policy)."""


class RunTimeLimitError(LoopengtError):
    """A model call ran into the run's `max_total_time_seconds`: the run stops (not retried)."""


class ModelCall:
    """One model call a turn asks for; its result is the reply (an AIMessage)."""

    __slots__ = ("calls", "messages", "model")

    def __init__(self, calls: Calls, model: Runnable[Any, Any], messages: list[BaseMessage]):
        self.calls = calls
        self.model = model
        self.messages = messages


class ToolUse:
    """One tool call a turn asks for; its result is (content, status), an error becoming
    text the model can act on."""

    __slots__ = ("call", "tool")

    def __init__(self, tool: BaseTool | None, call: ToolCall) -> None:
        self.tool = tool
        self.call = call


Request = ModelCall | ToolUse
Work = Generator[Request, Any, T]


class Calls:
    """The model calls of one attempt of a turn: the step timeout, replies and usage."""

    __slots__ = ("attempt", "budget", "deadline", "prices", "replies", "run_limit", "timeout")

    def __init__(
        self,
        timeout: float | None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        attempt: int = 1,
        budget: ContextBudget | None = None,
    ) -> None:
        self.attempt = attempt  # LangGraph's RetryPolicy attempt of the node, from 1
        self.budget = budget  # policy.context_budget: every call's messages fit in it
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.prices = prices or {}
        self.replies: list[AIMessage] = []
        self.run_limit: float | None = None  # set when the run's time limit binds first

    def bound_run(self, started_at: float | None, limit: float | None) -> None:
        """Every call also ends by the run's time limit (`max_total_time_seconds`, counted
        from ``started_at``, wall-clock): a call in flight is cancelled there, not after."""
        if limit is None:
            return
        left = limit if started_at is None else started_at + limit - time.time()
        run_deadline = time.monotonic() + max(0.0, left)
        if self.deadline is None or run_deadline < self.deadline:
            self.deadline, self.run_limit = run_deadline, limit

    def model(self, model: Runnable[Any, Any], messages: list[BaseMessage]) -> ModelCall:
        return ModelCall(self, model, messages)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def keep(self, reply: Any) -> AIMessage:
        """The reply as an AIMessage (a model may answer with a string or a chunk), kept.
        Not if this process lost the run meanwhile (`REPLY_GUARD`)."""
        guard = REPLY_GUARD.get()
        if guard is not None:
            guard()
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=_content(reply))
        meta = message.response_metadata
        if meta.get("model_provider") == "openai" and not meta.get("finish_reason"):
            # an OpenAI-compatible reply always ends with a finish_reason: a stream closed
            # before it is half a reply, not a short one (retried, not used)
            raise IncompleteReplyError(
                "the server ended the reply before it was complete (no finish_reason)"
            )
        self.replies.append(message)
        return message

    def timed_out(self) -> Exception:
        if self.run_limit is not None:
            return RunTimeLimitError(
                f"max_total_time: the run took longer than {self.run_limit:g}s"
            )
        return StepTimeoutError(f"no answer within the step timeout of {self.timeout:g}s")

    def usage(self) -> Update:
        if len(self.replies) == 1:
            return usage_of(self.replies[0], self.prices)
        total: Update = {}
        for reply in self.replies:
            total = add_numbers(total, usage_of(reply, self.prices))
        return total


def _content(reply: Any) -> str:
    return str(getattr(reply, "content", reply))


def usage_of(message: AIMessage, prices: Mapping[str, tuple[float, float]]) -> Update:
    meta = message.usage_metadata
    if meta is None:
        return new_usage(0, 0, 0.0)
    tokens_in, tokens_out = meta.get("input_tokens", 0), meta.get("output_tokens", 0)
    model = message.response_metadata.get("model_name")
    return new_usage(tokens_in, tokens_out, cost_usd(model, tokens_in, tokens_out, prices))


# -- the drivers ---------------------------------------------------------------------------------


def drive(work: Work[T], config: RunnableConfig) -> T:
    """Run ``work`` making its calls synchronously (LangGraph's `invoke`/`stream`)."""
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            request = work.send(value) if error is None else work.throw(error)
            value, error = None, None
            try:
                if type(request) is ModelCall:
                    value = _model_call(request)
                else:
                    value = _tool_use(request, config)  # type: ignore[arg-type]
            except Exception as exc:
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        work.close()


async def adrive(work: Work[T], config: RunnableConfig) -> T:
    """Run ``work`` awaiting its calls (LangGraph's `ainvoke`/`astream`)."""
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            request = work.send(value) if error is None else work.throw(error)
            value, error = None, None
            try:
                if type(request) is ModelCall:
                    value = await _amodel_call(request)
                else:
                    value = await _atool_use(request, config)  # type: ignore[arg-type]
            except Exception as exc:
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        work.close()


# no config argument to the model: LangChain takes the node's config (callbacks, tags,
# metadata) from the context LangGraph sets around the node, and passing it as well costs a
# second config merge on every call


def _model_call(request: ModelCall) -> AIMessage:
    calls, model, messages = request.calls, request.model, request.messages
    remaining = calls.remaining()
    if remaining is None:
        return calls.keep(model.invoke(_fit(calls, messages)))
    call = lambda: model.invoke(_fit(calls, messages))  # noqa: E731
    return calls.keep(_with_timeout(call, remaining, calls))


async def _amodel_call(request: ModelCall) -> AIMessage:
    calls = request.calls
    remaining = calls.remaining()
    if remaining is None:
        return calls.keep(await request.model.ainvoke(await _afit(calls, request.messages)))
    scope = asyncio.timeout(remaining)
    try:
        async with scope:  # a summary made to fit the budget is part of the step's time
            reply = await request.model.ainvoke(await _afit(calls, request.messages))
    except TimeoutError:
        if scope.expired():
            raise calls.timed_out() from None
        raise
    return calls.keep(reply)


def _fit(calls: Calls, messages: list[BaseMessage]) -> list[BaseMessage]:
    """``messages`` within the context budget (summarizing the dropped turns if asked)."""
    budget = calls.budget
    if budget is None:
        return messages
    kept, dropped = budget.split(messages)
    if not dropped or budget.mode != "summarize" or budget.summarizer is None:
        return kept
    summary = calls.keep(budget.summarizer().invoke(budget.summary_request(dropped)))
    return budget.with_summary(kept, str(summary.text))


async def _afit(calls: Calls, messages: list[BaseMessage]) -> list[BaseMessage]:
    budget = calls.budget
    if budget is None:
        return messages
    kept, dropped = budget.split(messages)
    if not dropped or budget.mode != "summarize" or budget.summarizer is None:
        return kept
    request = budget.summary_request(dropped)
    summary = calls.keep(await budget.summarizer().ainvoke(request))
    return budget.with_summary(kept, str(summary.text))


def _with_timeout(func: Callable[[], Any], seconds: float, calls: Calls) -> Any:
    """``func()`` for at most ``seconds``, in a thread: sync code cannot be cancelled."""
    box: dict[str, Any] = {}
    abandoned = threading.Event()
    context = contextvars.copy_context()
    context.run(ABANDONED.set, abandoned)

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    # a daemon thread: a model call that hangs must not keep the process alive; it runs in
    # a copy of this context, which carries the node's config to the model call
    worker = threading.Thread(target=context.run, args=(target,), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        abandoned.set()
        raise calls.timed_out()
    if "error" in box:
        raise box["error"]
    return box["value"]


# a tool's result goes to the model and into the checkpointed messages: a secret of this
# process's environment that a tool returns (a server echoing its env) reaches neither


def _tool_use(request: ToolUse, config: RunnableConfig) -> tuple[str, str]:
    try:
        output = _offered(request).invoke(request.call["args"], config)
        return hide_known(as_text(output)), "success"
    except Exception as exc:
        return _tool_error(exc)


async def _atool_use(request: ToolUse, config: RunnableConfig) -> tuple[str, str]:
    try:
        output = await _offered(request).ainvoke(request.call["args"], config)
        return hide_known(as_text(output)), "success"
    except Exception as exc:
        return _tool_error(exc)


def _offered(request: ToolUse) -> BaseTool:
    if request.tool is None:
        # also what a model gets for a tool (or transfer) it was not offered
        raise LookupError(f"unknown tool {request.call['name']!r}")
    return request.tool


def _tool_error(exc: Exception) -> tuple[str, str]:
    """A tool that raises gives the model its error text instead of ending the turn."""
    return hide_known(f"error: {type(exc).__name__}: {exc}"), "error"
