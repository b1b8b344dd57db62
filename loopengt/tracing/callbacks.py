"""LangChain callbacks -> trace events: steps, model calls and tool calls.

Steps are LangGraph node runs: chain runs whose parent is the graph's run and whose name is
their `langgraph_node` (routers and other runs inside a node have the node's run, or one
below it, as parent). Model and tool runs belong to the node run found by walking up their
parents, whatever wraps them (tool binding, structured output). LangGraph re-runs a node
that raised under its RetryPolicy as the same task (same `langgraph_checkpoint_ns`): a start
after a failed attempt of that task is a retry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from loopengt.tracing import calls as call_info
from loopengt.tracing.events import ERROR, MODEL_CALL, RETRY, STEP_END, STEP_START, TOOL_CALL, Event


@dataclass
class _Step:
    node: str
    step_id: str
    task: str
    started: float = field(default_factory=time.perf_counter)


@dataclass
class _Call:
    step: _Step | None
    fields: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)


class GraphCallbacks(BaseCallbackHandler):
    """Turns the callbacks of a LangGraph run into events; `event()` is the recorder's."""

    raise_error = False  # a tracing problem must never break the run
    run_inline = True  # keep callback order in async runs (the handler is thread-safe)

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self._lock = threading.RLock()
        self._roots: set[UUID] = set()
        self._parents: dict[UUID, UUID | None] = {}
        self._steps: dict[UUID, _Step] = {}
        self._calls: dict[UUID, _Call] = {}
        self._attempts: dict[str, int] = {}  # task -> attempts (LangGraph's RetryPolicy)
        self._failed_tasks: dict[str, str] = {}  # task -> error of its last attempt
        self._gate_retries: dict[str, dict[str, Any]] = {}  # node -> its failed gate record
        self._last_step: dict[str, str] = {}  # node -> step_id of its latest run
        self._interrupted: _Step | None = None

    def event(self, kind: str, **fields: Any) -> Event:
        raise NotImplementedError

    # -- LangChain callbacks: steps -------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node")
        with self._lock:
            if parent_run_id is None:
                self._roots.add(run_id)
                return
            self._parents[run_id] = parent_run_id
            if parent_run_id not in self._roots or not node or kwargs.get("name") != node:
                return  # a run inside a node (router, structured-output chain, ...)
            task = str((metadata or {}).get("langgraph_checkpoint_ns") or run_id)
            step = self._steps[run_id] = _Step(node, str(run_id), task)
            attempt = self._attempts[task] = self._attempts.get(task, 0) + 1
            failed = self._failed_tasks.pop(task, None)
            gate = self._gate_retries.pop(node, None)
        if failed is not None:
            self.event(
                RETRY,
                step=node,
                step_id=step.step_id,
                cause="error",
                attempt=attempt,
                reason=failed,
            )
        elif gate is not None:
            self.event(
                RETRY,
                step=node,
                step_id=step.step_id,
                cause="gate",
                attempt=(gate.get("attempt") or 0) + 1,
                reason=gate.get("reason") or "",
            )
        superstep = (metadata or {}).get("langgraph_step")
        self.event(
            STEP_START, step=node, step_id=step.step_id, attempt=attempt, superstep=superstep
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, error)

    def _end_chain(self, run_id: UUID, error: BaseException | None) -> None:
        from langgraph.errors import GraphBubbleUp, GraphInterrupt

        with self._lock:
            self._parents.pop(run_id, None)
            step = self._steps.pop(run_id, None)
            root = run_id in self._roots
            self._roots.discard(run_id)
            if step is not None:
                self._last_step[step.node] = step.step_id
                if isinstance(error, GraphInterrupt):
                    self._interrupted = step
        if root:
            # an exception out of the graph (a node's own errors are in its update)
            if isinstance(error, Exception) and not isinstance(error, GraphBubbleUp):
                self.event(ERROR, error=self._error_text(error))
            return
        if step is None:
            return
        fields: dict[str, Any] = {"status": "ok"}
        if isinstance(error, GraphInterrupt) or not isinstance(error, Exception | None):
            fields["status"] = "interrupted"  # an approval, or Ctrl-C (KeyboardInterrupt)
        elif error is not None and not isinstance(error, GraphBubbleUp):
            text = self._error_text(error)
            fields.update(status="error", error=text)
            with self._lock:
                self._failed_tasks[step.task] = text
        duration = round(time.perf_counter() - step.started, 6)
        self.event(STEP_END, step=step.node, step_id=step.step_id, duration_s=duration, **fields)

    # -- LangChain callbacks: model calls -------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt = call_info.prompt_messages(messages[0] if messages else [], self.max_chars)
        self._start_call(run_id, parent_run_id, call_info.model_fields(metadata, kwargs, prompt))

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt = [{"role": "user", "content": self._clip(p)} for p in prompts[:1]]
        self._start_call(run_id, parent_run_id, call_info.model_fields(metadata, kwargs, prompt))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._end_call(run_id)
        if call is not None:
            fields = call_info.response_fields(response, call.fields.get("model"), self.max_chars)
            self._emit_call(MODEL_CALL, call, fields)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._end_call(run_id)
        if call is not None:
            self._emit_call(MODEL_CALL, call, {"error": self._error_text(error)})

    # -- LangChain callbacks: tool calls --------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
        args = inputs if inputs is not None else input_str
        fields = {"name": name, "args": call_info.clip(args, self.max_chars)}
        self._start_call(run_id, parent_run_id, fields)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._end_call(run_id)
        if call is not None:
            result = self._clip(call_info.tool_output_text(output))
            self._emit_call(TOOL_CALL, call, {"result": result})

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._end_call(run_id)
        if call is not None:
            self._emit_call(TOOL_CALL, call, {"error": self._error_text(error)})

    # -- helpers -------------------------------------------------------------------------------
    def _start_call(self, run_id: UUID, parent: UUID | None, fields: dict[str, Any]) -> None:
        with self._lock:
            self._parents[run_id] = parent
            self._calls[run_id] = _Call(self._step_of(parent), fields)

    def _end_call(self, run_id: UUID) -> _Call | None:
        with self._lock:
            self._parents.pop(run_id, None)
            return self._calls.pop(run_id, None)

    def _emit_call(self, kind: str, call: _Call, result: dict[str, Any]) -> None:
        latency = round(time.perf_counter() - call.started, 6)
        step = call.step
        self.event(
            kind,
            step=step.node if step else None,
            step_id=step.step_id if step else None,
            **{**call.fields, **result},  # the response may name the model the request did not
            latency_s=latency,
        )

    def _step_of(self, run_id: UUID | None) -> _Step | None:
        """The node run a model or tool run belongs to (its nearest step ancestor)."""
        seen = 0
        while run_id is not None and seen < 100:  # bounded: parents never form a cycle
            if run_id in self._steps:
                return self._steps[run_id]
            run_id = self._parents.get(run_id)
            seen += 1
        return None

    def _clip(self, text: str) -> str:
        return call_info.clip(text, self.max_chars)  # type: ignore[no-any-return]

    def _error_text(self, error: BaseException) -> str:
        return self._clip(f"{type(error).__name__}: {error}")
