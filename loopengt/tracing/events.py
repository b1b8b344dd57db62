"""The trace's event schema and the pure helpers around it: truncation, reading a
`.jsonl` (also a half-written one), and the summary `runs/<run_id>.json` is made of.

Every event is a flat JSON object::

    {"ts": <epoch seconds>, "kind": ..., "run_id": ..., "session": <1-based>,
     "step": <node name or null>, "agent": <agent, when known>, ...fields of its kind}

    run_start   spec, input, resumed                  (written by the run engine)
    run_end     status, stop_reason, duration_s (this session), usage, outputs
    step_start  step_id, attempt (LangGraph retry attempt of the task), superstep
    step_end    step_id, status (loopengt.status.StepStatus: ok | failed | timed_out |
                skipped | rejected | waiting | interrupted), duration_s, error? | reason?
    model_call  step_id, model, provider, messages [{role, content, tool_calls?}], response,
                tool_calls [{name, args, id}], input_tokens, output_tokens, cost_usd,
                latency_s, response_model?, error?
    tool_call   step_id, name, args, result | error, latency_s
    gate        step_id, gate_step, gate_kind, passed, reason, attempt
    retry       step_id (of the new attempt), cause (error | gate), attempt, reason
    interrupt   step_id, interrupt_id, payload (e.g. {type: approval, step, message})
    error       step_id?, error
    stop        step_id, reason, status

Only agent turns are steps: pass-through, join and routing nodes never appear.
A session is one process working on the run (the first `run`, then each `resume`/`approve`).
A call event is written when the call ends; ``ts - latency_s`` is when it started.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from loopengt.serialization import json_default


class EventKind(StrEnum):
    """The kinds of event in a run's stream (`loopengt.tracing.stream`) and its trace."""

    RUN_START = "run_start"
    RUN_END = "run_end"
    STEP_START = "step_start"
    STEP_END = "step_end"
    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"
    GATE = "gate"
    RETRY = "retry"
    INTERRUPT = "interrupt"
    ERROR = "error"
    STOP = "stop"
    TEXT = "text"
    """A piece of a model's streamed reply: live displays only, never written to a trace."""


RUN_START, RUN_END = EventKind.RUN_START, EventKind.RUN_END
STEP_START, STEP_END = EventKind.STEP_START, EventKind.STEP_END
MODEL_CALL, TOOL_CALL = EventKind.MODEL_CALL, EventKind.TOOL_CALL
GATE, RETRY, INTERRUPT = EventKind.GATE, EventKind.RETRY, EventKind.INTERRUPT
ERROR, STOP = EventKind.ERROR, EventKind.STOP

Event = dict[str, Any]
Trace = dict[str, Any]


def truncate(text: str, max_chars: int | None) -> str:
    if max_chars is None or max_chars <= 0 or len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… [{len(text) - max_chars} more chars]"


def dumps_line(event: Event) -> str:
    return json.dumps(event, ensure_ascii=False, default=json_default) + "\n"


def read_events(path: Path) -> list[Event]:
    """Events of a `.jsonl`; a line cut short by a kill (or not JSON at all) is skipped."""
    events: list[Event] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and "kind" in event:
                events.append(event)
    return events


def usage_of(events: Iterable[Event]) -> dict[str, float]:
    """Token and cost totals of the model calls among ``events``."""
    total = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost_usd": 0.0}
    calls = 0
    for event in events:
        if event.get("kind") != MODEL_CALL:
            continue
        calls += 1
        tokens_in, tokens_out = event.get("input_tokens") or 0, event.get("output_tokens") or 0
        total["input_tokens"] += tokens_in
        total["output_tokens"] += tokens_out
        total["total_tokens"] += tokens_in + tokens_out
        total["cost_usd"] += event.get("cost_usd") or 0.0
    return {**total, "model_calls": calls}


def sessions(events: list[Event]) -> list[list[Event]]:
    """``events`` split at each `run_start` (one list per process that worked on the run)."""
    out: list[list[Event]] = []
    for event in events:
        if event.get("kind") == RUN_START or not out:
            out.append([])
        out[-1].append(event)
    return out


def summarize(
    events: list[Event],
    *,
    run_id: str | None = None,
    spec: str | None = None,
    status: str | None = None,
    stop_reason: str | None = None,
    outputs: Any = None,
    usage: Mapping[str, Any] | None = None,
) -> Trace:
    """The trace document: run facts plus every event. Values not given are taken from the
    events: the last `run_end`, else the run is still going (or was killed) — "running".

    ``duration_s`` adds up the sessions (time spent waiting for an approval between two
    sessions is not counted); ``started``/``ended`` are the first and last event's times.
    """
    starts = [e for e in events if e.get("kind") == RUN_START]
    ends = [e for e in events if e.get("kind") == RUN_END]
    last = sessions(events)[-1] if events else []
    end = next((e for e in reversed(last) if e.get("kind") == RUN_END), None)
    if run_id is None:
        run_id = next((e["run_id"] for e in events if e.get("run_id")), None)
    if spec is None:
        spec = next((e["spec"] for e in starts if e.get("spec")), None)
    if status is None:
        status = end.get("status") if end else "running"
    if stop_reason is None and end is not None:
        stop_reason = end.get("stop_reason")
    if outputs is None and end is not None:
        outputs = end.get("outputs")
    if usage is None:
        usage = (end or {}).get("usage") or usage_of(events)
    duration = sum(s[-1]["ts"] - s[0]["ts"] for s in sessions(events) if s)
    return {
        "run_id": run_id,
        "spec": spec,
        "status": status,
        "stop_reason": stop_reason,
        "started": events[0]["ts"] if events else None,
        "ended": events[-1]["ts"] if events and end is not None else None,
        "duration_s": round(duration, 6),
        "sessions": max(len(starts), 1 if events else 0),
        "complete": bool(ends) and end is not None,
        "usage": dict(usage),
        "outputs": outputs,
        "events": events,
    }
