"""A run's one stream of typed events, and where they come from.

`RunEvents` is a LangChain callback handler: pass it in a run's config (the run engine
does) and every step, model call and tool call of the graph becomes a `RunEvent`. What the
callbacks cannot see comes from the graph's own stream, handed to `RunEvents.chunk`: gate
results, errors and the stop from ``updates``, approvals from ``__interrupt__``, streamed
text from ``messages``. Subscribers — the trace file, the live progress display, evals, the
MCP server's `get_run` — receive every event in order; one that raises is dropped from
nothing and breaks nothing (a tracing bug must never fail a run).

Steps are the nodes that run an agent turn: LangGraph passes each node's metadata to
callbacks, and an agent turn's carries ``loopengt_agent``; pass-through, join and routing
nodes have none and are not steps. LangGraph re-runs a node that raised under its
RetryPolicy as the same task (same ``langgraph_checkpoint_ns``): a start after a failed
attempt of that task is a retry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from loopengt.status import StepStatus
from loopengt.tracing import calls as call_info
from loopengt.tracing.events import Event, EventKind

log = logging.getLogger(__name__)
AGENT_KEY = "loopengt_agent"  # node metadata of an agent turn (loopengt.graph.turn)
INTERRUPT_NODE = "__interrupt__"


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One thing that happened in a run; ``data`` holds the fields of its kind (see
    `loopengt.tracing.events` for each kind's fields)."""

    kind: EventKind
    run_id: str
    ts: float
    step: str | None = None
    """The node (step) it happened in."""
    step_id: str | None = None
    """One run of that node: a retry or a gate's next attempt is a new one."""
    agent: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Event:
        """The event as one flat trace line."""
        head: Event = {"ts": self.ts, "kind": str(self.kind), "run_id": self.run_id}
        head["step"] = self.step
        if self.agent:
            head["agent"] = self.agent
        if self.step_id is not None:
            head["step_id"] = self.step_id
        return {**head, **self.data}


EventSink = Callable[[RunEvent], None]


@dataclass
class _Step:
    node: str
    agent: str | None
    step_id: str
    task: str
    started: float = field(default_factory=time.perf_counter)


@dataclass
class _Call:
    step: _Step | None
    fields: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)


def step_status(output: Any) -> tuple[StepStatus, str | None]:
    """What a step's node run came to, from the update it returned: an agent turn that
    found the run stopped returns nothing; a failure carries ``errors``; a refused approval
    or a failed gate attempt says no."""
    # a Command routes; its update is the result
    update = output.update if hasattr(output, "goto") else output
    if not update or not isinstance(update, Mapping):
        return StepStatus.SKIPPED, None
    errors = update.get("errors") or []
    if errors:
        last = errors[-1] if isinstance(errors[-1], Mapping) else {"error": errors[-1]}
        status = StepStatus.TIMED_OUT if last.get("timed_out") else StepStatus.FAILED
        return status, str(last.get("error"))
    if update.get("status") == "rejected":
        return StepStatus.REJECTED, update.get("stop_reason")
    gates = update.get("gates") or []
    if gates and not gates[-1].get("passed"):
        return StepStatus.REJECTED, gates[-1].get("reason")
    if "turns" not in update:  # a policy stop made before any model call
        return StepStatus.SKIPPED, update.get("stop_reason")
    return StepStatus.OK, None


class RunEvents(BaseCallbackHandler):
    """The event stream of run ``run_id``; ``max_chars`` truncates prompts, responses and
    tool results; ``prices`` is the project's `[prices]` table, to cost each model call."""

    raise_error = False  # a tracing problem must never break the run
    run_inline = True  # keep callback order in async runs (the handler is thread-safe)

    def __init__(
        self,
        run_id: str,
        *,
        max_chars: int | None = 4000,
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.run_id = run_id
        self.max_chars = max_chars
        self.prices = prices or {}
        self._sinks: list[EventSink] = []
        self._lock = threading.RLock()
        self._roots: set[UUID] = set()
        self._parents: dict[UUID, UUID | None] = {}
        self._steps: dict[UUID, _Step] = {}
        self._calls: dict[UUID, _Call] = {}
        self._attempts: dict[str, int] = {}  # task -> attempts (LangGraph's RetryPolicy)
        self._failed_tasks: dict[str, str] = {}  # task -> error of its last attempt
        self._gate_retries: dict[str, dict[str, Any]] = {}  # node -> its failed gate record
        self._last_step: dict[str, _Step] = {}  # node -> its latest run
        self._waiting: _Step | None = None
        self._stopped = False

    # -- subscribers ---------------------------------------------------------------------------
    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def publish(self, kind: EventKind, step: _Step | str | None = None, **data: Any) -> RunEvent:
        """Send one event to every subscriber, in order (one at a time)."""
        node = step.node if isinstance(step, _Step) else step
        agent = step.agent if isinstance(step, _Step) else None
        if agent is None and node in self._last_step:
            agent = self._last_step[node].agent
        step_id = step.step_id if isinstance(step, _Step) else data.pop("step_id", None)
        with self._lock:
            event = RunEvent(kind, self.run_id, time.time(), node, step_id, agent, data)
            for sink in self._sinks:
                try:
                    sink(event)
                except Exception:  # a subscriber's bug must not fail the run...
                    if os.environ.get("LOOPENGT_DEBUG") == "1":
                        raise  # ...but `--debug` shows it
                    log.exception("loopengt event subscriber failed on %s", kind)
        return event

    # -- the graph's stream ----------------------------------------------------------------------
    def chunk(self, mode: str, chunk: Any) -> None:
        """One item of ``graph.stream(..., stream_mode=[...])`` (``updates``, ``messages``)."""
        if mode == "updates":
            for node, update in chunk.items():
                self._update(node, update)
        elif mode == "messages":
            message, metadata = chunk
            text = getattr(message, "text", "")
            # langchain-core's `.text` is a str that is also (deprecated) callable: calling
            # it would print a deprecation warning on the user's terminal
            text = str(text) if isinstance(text, str) else text()
            node = metadata.get("langgraph_node")
            if text and node in self._last_step:
                self.publish(EventKind.TEXT, self._last_step[node], text=text)

    def _update(self, node: str, update: Any) -> None:
        if node == INTERRUPT_NODE:
            for pending in update if isinstance(update, list | tuple) else [update]:
                self._interrupt(pending)
            return
        if not isinstance(update, Mapping):
            return  # a node that returned nothing
        step = self._last_step.get(node) or node
        for record in update.get("gates") or []:
            passed = bool(record.get("passed"))
            self.publish(
                EventKind.GATE,
                step,
                gate_step=record.get("step"),
                gate_kind=record.get("kind"),
                passed=passed,
                reason=record.get("reason") or "",
                attempt=record.get("attempt"),
            )
            if not passed and not update.get("stop_reason"):
                with self._lock:
                    self._gate_retries[node] = dict(record)
        for record in update.get("errors") or []:
            error = record.get("error") if isinstance(record, Mapping) else record
            self.publish(EventKind.ERROR, step, error=self._clip(str(error)))
        reason = update.get("stop_reason")
        if reason and not self._stopped:
            self._stopped = True  # the state keeps the first stop reason; so does the trace
            self.publish(EventKind.STOP, step, reason=reason, status=update.get("status"))

    def _interrupt(self, pending: Any) -> None:
        payload = getattr(pending, "value", pending)
        step: _Step | str | None = self._waiting
        if step is None and isinstance(payload, Mapping):
            step = payload.get("step")
        self.publish(
            EventKind.INTERRUPT, step, interrupt_id=getattr(pending, "id", None), payload=payload
        )

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
        meta = metadata or {}
        node = meta.get("langgraph_node")
        with self._lock:
            if parent_run_id is None:
                self._roots.add(run_id)
                return
            self._parents[run_id] = parent_run_id
            is_step = parent_run_id in self._roots and kwargs.get("name") == node
            if not is_step or not isinstance(node, str) or AGENT_KEY not in meta:
                return  # a run inside a node, or a node that is no agent turn
            task = str(meta.get("langgraph_checkpoint_ns") or run_id)
            step = self._steps[run_id] = _Step(node, meta[AGENT_KEY], str(run_id), task)
            self._last_step[node] = step
            attempt = self._attempts[task] = self._attempts.get(task, 0) + 1
            failed = self._failed_tasks.pop(task, None)
            gate = self._gate_retries.pop(node, None)
        if failed is not None:
            self.publish(EventKind.RETRY, step, cause="error", attempt=attempt, reason=failed)
        elif gate is not None:
            retry = (gate.get("attempt") or 0) + 1
            reason = gate.get("reason") or ""
            self.publish(EventKind.RETRY, step, cause="gate", attempt=retry, reason=reason)
        superstep = meta.get("langgraph_step")
        self.publish(EventKind.STEP_START, step, attempt=attempt, superstep=superstep)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, None, outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id, error, None)

    def _end_chain(self, run_id: UUID, error: BaseException | None, outputs: Any) -> None:
        from langgraph.errors import GraphBubbleUp, GraphInterrupt

        with self._lock:
            self._parents.pop(run_id, None)
            step = self._steps.pop(run_id, None)
            root = run_id in self._roots
            self._roots.discard(run_id)
            if isinstance(error, GraphInterrupt) and step is not None:
                self._waiting = step
        if root:
            # an exception out of the graph (a node's own errors are in its update)
            if isinstance(error, Exception) and not isinstance(error, GraphBubbleUp):
                self.publish(EventKind.ERROR, error=self._error_text(error))
            return
        if step is None:
            return
        reason: str | None = None
        if isinstance(error, GraphInterrupt):
            status = StepStatus.WAITING
        elif error is not None and not isinstance(error, Exception):
            status = StepStatus.INTERRUPTED  # Ctrl-C (KeyboardInterrupt), a cancelled task
        elif error is not None and not isinstance(error, GraphBubbleUp):
            status, reason = StepStatus.FAILED, self._error_text(error)
            with self._lock:
                self._failed_tasks[step.task] = reason
        elif error is not None:
            status = StepStatus.OK  # a Command to a parent graph
        else:
            status, reason = step_status(outputs)
        fields: dict[str, Any] = {"status": status}
        if reason and status != StepStatus.SKIPPED:
            fields["error" if status in _FAILURES else "reason"] = self._clip(reason)
        duration = round(time.perf_counter() - step.started, 6)
        self.publish(EventKind.STEP_END, step, duration_s=duration, **fields)

    # -- LangChain callbacks: model and tool calls ----------------------------------------------
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
            model = call.fields.get("model")
            fields = call_info.response_fields(response, model, self.max_chars, self.prices)
            self._emit_call(EventKind.MODEL_CALL, call, fields)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._end_call(run_id)
        if call is not None:
            self._emit_call(EventKind.MODEL_CALL, call, {"error": self._error_text(error)})

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
            self._emit_call(EventKind.TOOL_CALL, call, {"result": result})

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._end_call(run_id)
        if call is not None:
            self._emit_call(EventKind.TOOL_CALL, call, {"error": self._error_text(error)})

    # -- helpers -------------------------------------------------------------------------------
    def _start_call(self, run_id: UUID, parent: UUID | None, fields: dict[str, Any]) -> None:
        with self._lock:
            self._parents[run_id] = parent
            self._calls[run_id] = _Call(self._step_of(parent), fields)

    def _end_call(self, run_id: UUID) -> _Call | None:
        with self._lock:
            self._parents.pop(run_id, None)
            return self._calls.pop(run_id, None)

    def _emit_call(self, kind: EventKind, call: _Call, result: dict[str, Any]) -> None:
        latency = round(time.perf_counter() - call.started, 6)
        # the response may name the model the request did not
        self.publish(kind, call.step, **{**call.fields, **result}, latency_s=latency)

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


_FAILURES = (StepStatus.FAILED, StepStatus.TIMED_OUT)
