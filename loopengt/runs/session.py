"""One session of a run: stream the graph from a checkpoint, feed the trace recorder and the
progress display, and write the outcome to the run index. A run has one session per
`run`, `resume`, `approve` or `reject`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopengt.config import config_section
from loopengt.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, LoopengtError
from loopengt.project import STATE_DIR
from loopengt.runs.index import STATUS_INTERRUPTED, STATUS_WAITING, RunRecord
from loopengt.runs.storage import Storage
from loopengt.spec.models import LoopSpec

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class RunResult:
    run_id: str
    status: str
    stop_reason: str | None
    outputs: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    trace_path: str | None = None
    pending: dict[str, Any] | None = None  # the approval a waiting run asks for
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.status in ("completed", STATUS_WAITING):
            return EXIT_OK
        if self.status == STATUS_INTERRUPTED:
            return EXIT_INTERRUPTED
        return EXIT_RUN_FAILED


class RunInterrupted(LoopengtError):
    """Ctrl-C: the run is checkpointed and can be resumed."""

    exit_code = EXIT_INTERRUPTED


def thread_config(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}}


def drive(
    graph: Any,
    spec: LoopSpec,
    storage: Storage,
    record: RunRecord,
    graph_input: Any,
    root: Path | str,
    on_event: EventSink | None,
    stream_text: bool,
    config: dict[str, Any] | None = None,
) -> RunResult:
    from loopengt.tracing import TraceRecorder, node_agents

    agents = node_agents(spec)
    emit = _isolated(on_event)
    emit("run_start", {"run_id": record.run_id, "agents": agents})
    runs_dir = Path(root).resolve() / STATE_DIR / "runs"
    max_chars = int(config_section("trace", root).get("max_text_chars", 4000))
    recorder = TraceRecorder(
        record.run_id,
        runs_dir=runs_dir,
        spec_name=spec.name,
        max_chars=max_chars,
        agents=agents,
    )
    resumed = graph_input is None or not isinstance(graph_input, dict)
    recorder.event("run_start", spec=spec.name, input=record.options.get("inputs"), resumed=resumed)
    config = {**(config or thread_config(record.run_id)), "callbacks": [recorder]}
    config["metadata"] = {"loopengt_run_id": record.run_id, "loopengt_spec": spec.name}
    started = time.monotonic()
    modes = ["updates", "tasks", *(["messages"] if stream_text else [])]
    try:
        # durability="sync": a step's checkpoint is on disk before the next step starts
        # (LangGraph's default, "async", can lose it to a kill -9 and repeat the step)
        stream = graph.stream(graph_input, config, stream_mode=modes, durability="sync")
        for mode, chunk in stream:
            _dispatch(mode, chunk, recorder, emit)
    except KeyboardInterrupt:
        _finish(graph, storage, record, recorder, started, STATUS_INTERRUPTED)
        raise RunInterrupted(
            f"run {record.run_id} interrupted; continue it with `loopengt resume {record.run_id}`"
        ) from None
    except Exception as exc:
        from loopengt.providers.errors import explain_model_error

        reason = f"error: {explain_model_error(exc)}"
        _finish(graph, storage, record, recorder, started, "failed", reason)
        raise LoopengtError(f"run {record.run_id} failed: {reason}") from exc
    finally:
        from loopengt.tools.mcp_client import close_all

        close_all()
    result = _finish(graph, storage, record, recorder, started)
    emit("run_end", {"result": result})
    return result


def _isolated(sink: EventSink | None) -> EventSink:
    """The caller's event sink (progress display), whose bugs must never fail the run."""

    def emit(kind: str, data: dict[str, Any]) -> None:
        if sink is None:
            return
        try:
            sink(kind, data)
        except Exception:
            if os.environ.get("LOOPENGT_DEBUG") == "1":
                raise

    return emit


def _dispatch(mode: str, chunk: Any, recorder: Any, emit: EventSink) -> None:
    if mode == "updates":
        for node, update in chunk.items():
            recorder.state_update(node, update)
            emit("update", {"node": node, "update": update})
    elif mode == "tasks":
        if "result" not in chunk and "error" not in chunk:
            emit("step_start", {"node": chunk.get("name")})
        else:
            # a step that stops the run (failure, rejection) returns normally: say so
            result = chunk.get("result")
            stopped = result.get("stop_reason") if isinstance(result, dict) else None
            data = {"node": chunk.get("name"), "error": chunk.get("error") or stopped}
            waiting = bool(chunk.get("interrupts"))
            # a node reached after the run stopped writes nothing: it did not run a step
            skipped = not result and not data["error"] and not waiting
            emit("step_end", {**data, "waiting": waiting, "skipped": skipped})
    elif mode == "messages":
        message, metadata = chunk
        text = getattr(message, "text", "")
        text = text() if callable(text) else text
        if text:
            emit("text", {"node": metadata.get("langgraph_node"), "text": text})


def _finish(
    graph: Any,
    storage: Storage,
    record: RunRecord,
    recorder: Any,
    started: float,
    status: str | None = None,
    reason: str | None = None,
) -> RunResult:
    snapshot = graph.get_state(thread_config(record.run_id))
    values = dict(snapshot.values or {})
    pending = None
    if status is None:
        interrupts = getattr(snapshot, "interrupts", ()) or ()
        if interrupts:
            status, pending = STATUS_WAITING, dict(interrupts[0].value)
        else:
            status = values.get("status") or ("running" if snapshot.next else "completed")
    reason = reason or values.get("stop_reason")
    outputs = values.get("outputs") or {}
    usage = values.get("usage") or {}
    trace_path = recorder.finish(status=status, stop_reason=reason, outputs=outputs, usage=usage)
    ended = time.time()
    storage.index.update(
        record.run_id,
        status=status,
        stop_reason=reason,
        steps_done=len(outputs),
        tokens=int(usage.get("total_tokens", 0)),
        cost_usd=float(usage.get("cost_usd", 0.0)),
        ended_at=None if status == STATUS_WAITING else ended,
        trace_path=str(trace_path),
    )
    return RunResult(
        run_id=record.run_id,
        status=status,
        stop_reason=reason,
        outputs=outputs,
        usage=usage,
        trace_path=str(trace_path),
        pending=pending,
        duration_s=time.monotonic() - started,
    )
