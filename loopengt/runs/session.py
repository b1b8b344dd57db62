"""One session of a run: stream the graph from a checkpoint on the async path, publish the
run's event stream (the trace file and the caller's subscriber listen), and write the
outcome to the run index. A run has one session per `run`, `resume`, `approve` or `reject`."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Any

from loopengt.config import Config
from loopengt.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    LoopengtError,
)
from loopengt.graph.calls import REPLY_GUARD
from loopengt.runs.index import RunRecord
from loopengt.runs.lease import Lease
from loopengt.runs.shared_trace import SharedEvents
from loopengt.runs.storage import Storage
from loopengt.spec.models import LoopSpec
from loopengt.status import RunStatus
from loopengt.tracing.events import EventKind
from loopengt.tracing.stream import EventSink


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
    bad_input: bool = False
    """It failed on the user's input (a cassette that does not match): resuming would fail
    the same way, so the CLI exits 2 and offers no resume."""

    @property
    def exit_code(self) -> int:
        if self.status in (RunStatus.COMPLETED, RunStatus.WAITING_APPROVAL):
            return EXIT_OK
        if self.bad_input:
            return EXIT_BAD_INPUT
        if self.status == RunStatus.INTERRUPTED:
            return EXIT_INTERRUPTED
        return EXIT_RUN_FAILED


class RunInterrupted(LoopengtError):
    """Ctrl-C: the run is checkpointed and can be resumed."""

    exit_code = EXIT_INTERRUPTED


# sessions running in this process (a server runs many at once on one event loop)
_ACTIVE = [0]


def active_sessions() -> int:
    """How many sessions this process is running."""
    return _ACTIVE[0]


def thread_config(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}}


@dataclass
class Session:
    """What one session works with."""

    graph: Any
    spec: LoopSpec
    storage: Storage
    record: RunRecord
    config: Config
    on_event: EventSink | None = None
    stream_text: bool = False
    answer: dict[str, Any] | None = None
    """The approval this session continues with (`approve`/`reject`, and the comment):
    written in its run_start event, so the trace keeps it."""


async def run_session(
    session: Session, graph_input: Any, run_config: dict[str, Any] | None = None
) -> RunResult:
    """Drive ``session.graph`` from ``graph_input`` (None: from the last checkpoint, a
    ``Command``: an approval's answer) to its end, an approval, a failure or Ctrl-C."""
    from loopengt.tracing import RunEvents, TraceRecorder

    record, config = session.record, session.config
    events = RunEvents(record.run_id, max_chars=config.trace_chars, prices=config.prices)
    index = session.storage.index
    recorder = await asyncio.to_thread(
        TraceRecorder,
        record.run_id,
        runs_dir=config.state_dir / "runs",
        spec_name=session.spec.name,
        shared=SharedEvents(index, record.run_id) if index.postgres else None,
    )
    events.subscribe(recorder)
    if session.on_event is not None:
        events.subscribe(session.on_event)
    resumed = graph_input is None or not isinstance(graph_input, dict)
    inputs = record.options.get("inputs")
    start: dict[str, Any] = {"spec": session.spec.name, "input": inputs, "resumed": resumed}
    if session.answer is not None:
        start["answer"] = session.answer
    events.publish(EventKind.RUN_START, **start)
    run_config = {**(run_config or thread_config(record.run_id)), "callbacks": [events]}
    run_config["metadata"] = {"loopengt_run_id": record.run_id, "loopengt_spec": session.spec.name}
    lease = Lease(session.storage.index, record, record.owner)
    this = asyncio.current_task()
    assert this is not None  # run_session is always awaited in a task
    heartbeat = asyncio.create_task(lease.run(this.cancel))
    guard = REPLY_GUARD.set(lease.check)  # the fence: see Lease
    modes = ["updates", *(["messages"] if session.stream_text else [])]
    outcome: tuple[RunStatus | None, str | None] = (None, None)
    error: Exception | None = None
    _ACTIVE[0] += 1
    try:
        # durability="sync": a step's checkpoint is on disk before the next step starts
        # (LangGraph's default, "async", can lose it to a kill -9 and repeat the step)
        stream = session.graph.astream(
            graph_input, run_config, stream_mode=modes, durability="sync"
        )
        async for mode, chunk in stream:
            events.chunk(mode, chunk)
    except (KeyboardInterrupt, asyncio.CancelledError):
        outcome = (RunStatus.INTERRUPTED, None)
        if lease.lost:  # cancelled by the heartbeat, not by the caller: not theirs to see
            this.uncancel()
    except Exception as exc:
        from loopengt.providers.errors import explain_model_error

        outcome, error = (RunStatus.FAILED, f"error: {explain_model_error(exc, config)}"), exc
    finally:
        heartbeat.cancel()
        REPLY_GUARD.reset(guard)
        _ACTIVE[0] -= 1
        if not _ACTIVE[0]:  # MCP tool servers are shared by the runs of this process
            from loopengt.tools.mcp_client import close_all

            close_all()
    if lease.lost:
        recorder.close()  # the run's outcome is the new owner's to write
        raise LoopengtError(
            f"run {record.run_id} was taken over by another process (its lease ran out while "
            "this one was not heard from); this one stopped"
        )
    result = await _finish(session, events, recorder, lease, *outcome)
    if outcome[0] == RunStatus.INTERRUPTED:
        raise RunInterrupted(
            f"run {record.run_id} interrupted; continue it with `loopengt resume {record.run_id}`"
        )
    if outcome[0] == RunStatus.FAILED:
        raise LoopengtError(f"run {record.run_id} failed: {outcome[1]}") from error
    return result


async def _finish(
    session: Session,
    events: Any,
    recorder: Any,
    lease: Lease,
    status: RunStatus | None,
    reason: str | None,
) -> RunResult:
    record = session.record
    snapshot = await session.graph.aget_state(thread_config(record.run_id))
    values = dict(snapshot.values or {})
    pending = None
    if status is None:
        interrupts = getattr(snapshot, "interrupts", ()) or ()
        if interrupts:
            status, pending = RunStatus.WAITING_APPROVAL, dict(interrupts[0].value)
        else:
            ran_out = RunStatus.RUNNING if snapshot.next else RunStatus.COMPLETED
            status = RunStatus(values.get("status") or ran_out)
    reason = reason or values.get("stop_reason")
    outputs = values.get("outputs") or {}
    usage = values.get("usage") or {}
    duration = time.monotonic() - lease.started
    events.publish(
        EventKind.RUN_END,
        status=status,
        stop_reason=reason,
        duration_s=round(duration, 6),
        usage=dict(usage),
        outputs=outputs,
    )
    if recorder.shared is None:
        trace_path = recorder.finish(status=status, stop_reason=reason, usage=usage)
    else:  # waits for the database to have every line
        finish = functools.partial(recorder.finish, status=status, stop_reason=reason, usage=usage)
        trace_path = await asyncio.to_thread(finish)
    # only while this process still owns the run (another may have taken it over since)
    await session.storage.index.aclaim(
        record.run_id,
        {"owner": lease.owner},
        status=status.value,
        stop_reason=reason,
        steps_done=len(outputs),
        tokens=int(usage.get("total_tokens", 0)),
        cost_usd=float(usage.get("cost_usd", 0.0)),
        ended_at=None if status == RunStatus.WAITING_APPROVAL else time.time(),
        trace_path=str(trace_path),
        run_seconds=lease.run_seconds(),
        lease_until=None,
    )
    return RunResult(
        run_id=record.run_id,
        status=status.value,
        stop_reason=reason,
        outputs=outputs,
        usage=usage,
        trace_path=str(trace_path),
        pending=pending,
        duration_s=duration,
        bad_input=any(e.get("bad_input") for e in values.get("errors") or []),
    )
