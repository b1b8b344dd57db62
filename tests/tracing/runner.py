"""Drives a compiled spec the way the run engine does: the run's event stream as a callback,
every ``updates`` chunk handed to it, the recorder subscribed, ``finish`` with the final
state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopengt.tracing import EventKind, RunEvents, TraceRecorder
from loopengt.tracing.events import Event, read_events


def record(
    graph: Any,
    spec: Any,
    runs_dir: Path,
    *,
    run_id: str = "run-1",
    payload: Any = None,
    resumed: bool = False,
    finish: bool = True,
    max_chars: int | None = 2000,
) -> tuple[TraceRecorder, dict[str, Any]]:
    """Run ``graph`` once (to its end or an interrupt); returns (recorder, final state)."""
    recorder = TraceRecorder(run_id, runs_dir=runs_dir, spec_name=spec.name)
    events = RunEvents(run_id, max_chars=max_chars)
    events.subscribe(recorder)
    config = {"configurable": {"thread_id": run_id}, "callbacks": [events]}
    run_input = {} if payload is None or not isinstance(payload, dict) else payload.get("input")
    events.publish(EventKind.RUN_START, spec=spec.name, input=run_input, resumed=resumed)
    state: dict[str, Any] = {}
    interrupted = False
    inp = {"input": {}} if payload is None else payload
    for mode, chunk in graph.stream(inp, config, stream_mode=["updates", "values"]):
        if mode == "updates":
            events.chunk(mode, chunk)
            interrupted = interrupted or "__interrupt__" in chunk
        else:
            state = chunk
    if finish:
        status = "waiting_approval" if interrupted else state.get("status") or "completed"
        reason, usage = state.get("stop_reason"), state.get("usage")
        outputs = state.get("outputs")
        events.publish(
            EventKind.RUN_END, status=status, stop_reason=reason, usage=usage, outputs=outputs
        )
        recorder.finish(status=status, stop_reason=reason, usage=usage)
    return recorder, state


def kinds(events: list[Event], *wanted: str) -> list[Event]:
    return [e for e in events if e["kind"] in wanted]


def step_events(events: list[Event]) -> list[tuple[str, str]]:
    """(kind, step) of every step_start/step_end, in order."""
    return [(e["kind"], e["step"]) for e in kinds(events, "step_start", "step_end")]


def lines_of(runs_dir: Path, run_id: str = "run-1") -> list[Event]:
    return read_events(runs_dir / f"{run_id}.jsonl")
