"""A node's model calls: each under what is left of the step timeout, their replies and
token usage kept for the state update."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig

from loopengt.graph.state import Update, add_numbers, new_usage
from loopengt.providers.pricing import cost_usd


class StepTimeoutError(TimeoutError):
    """A step's model call ran past step_timeout_seconds (retried per policy)."""


def call_with_timeout(func: Callable[[], AIMessage], seconds: float, limit: float) -> AIMessage:
    """Run ``func`` for at most ``seconds``; ``limit`` is the configured step timeout the
    error names (``seconds`` is what is left of it)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    # a daemon thread: a model call that hangs must not keep the process alive; it runs in
    # a copy of this context, which carries the node's config to the model call
    worker = threading.Thread(target=contextvars.copy_context().run, args=(target,), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StepTimeoutError(f"no answer within the step timeout of {limit:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]  # set by target() when no error


def usage_of(message: AIMessage) -> Update:
    meta = message.usage_metadata
    if meta is None:
        return new_usage(0, 0, 0.0)
    tokens_in, tokens_out = meta.get("input_tokens", 0), meta.get("output_tokens", 0)
    model = message.response_metadata.get("model_name")
    return new_usage(tokens_in, tokens_out, cost_usd(model, tokens_in, tokens_out))


class ModelCalls:
    """Model calls of one node execution: applies the timeout, keeps usage and replies."""

    def __init__(self, config: RunnableConfig, timeout: float | None) -> None:
        self.config = config
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.replies: list[AIMessage] = []

    def __call__(self, model: Any, messages: list[BaseMessage]) -> AIMessage:
        # no config argument: LangChain takes the node's config (callbacks, tags, metadata)
        # from the context LangGraph sets around the node, and passing it as well costs a
        # second config merge on every call
        if self.timeout is None or self.deadline is None:
            reply = model.invoke(messages)
        else:
            remaining = max(0.0, self.deadline - time.monotonic())
            reply = call_with_timeout(lambda: model.invoke(messages), remaining, self.timeout)
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        self.replies.append(reply)
        return reply

    def usage(self) -> Update:
        if len(self.replies) == 1:
            return usage_of(self.replies[0])
        total: Update = {}
        for reply in self.replies:
            total = add_numbers(total, usage_of(reply))
        return total
