"""Deterministic run metrics, read from a run's trace: the part of an eval that needs no model.

Everything comes from the event stream the run wrote (`loopengt.tracing.events`), so the
same numbers come out for a live run, a resumed one and a replayed one, and `loopengt eval`
of a run that finished long ago needs nothing but its trace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loopengt.status import RunStatus, StepStatus
from loopengt.tracing.events import GATE, MODEL_CALL, RETRY, TOOL_CALL, Trace
from loopengt.tracing.views import step_views


@dataclass(frozen=True)
class RunMetrics:
    """What a run did, in numbers. Latencies in seconds, cost in USD."""

    status: str
    stop_reason: str | None
    steps_total: int
    """Steps the spec declares."""
    steps_completed: int
    """Declared steps whose last attempt ended ok."""
    turns: int
    """Agent turns taken (each attempt of each step, each supervisor decision)."""
    latency_s: float
    """The run's working time (sessions added up; waiting for an approval not counted)."""
    step_latency_s: dict[str, float] = field(default_factory=dict)
    """Per step: the time its attempts took, added up."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    gates: int = 0
    gates_passed: int = 0
    retries: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tools_used: list[str] = field(default_factory=list)
    """Names of the tools called, each once, in the order first called."""

    @property
    def gate_pass_rate(self) -> float | None:
        return None if not self.gates else self.gates_passed / self.gates

    @property
    def completed(self) -> bool:
        return self.status == RunStatus.COMPLETED

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gate_pass_rate": self.gate_pass_rate}


def run_metrics(trace: Trace, declared_steps: list[str] | None = None) -> RunMetrics:
    """The metrics of the run ``trace`` records; ``declared_steps``, the spec's step names
    (default: the steps the trace saw)."""
    events: list[dict[str, Any]] = trace.get("events") or []
    views = step_views(trace)
    last_status: dict[str, str] = {}
    step_latency: dict[str, float] = {}
    for view in views:
        last_status[view.node] = view.status
        if view.duration is not None:
            step_latency[view.node] = round(step_latency.get(view.node, 0.0) + view.duration, 6)
    declared = declared_steps if declared_steps is not None else list(last_status)
    gates = [e for e in events if e.get("kind") == GATE]
    tools = [e for e in events if e.get("kind") == TOOL_CALL]
    calls = [e for e in events if e.get("kind") == MODEL_CALL]
    usage = trace.get("usage") or {}
    return RunMetrics(
        status=str(trace.get("status") or RunStatus.RUNNING),
        stop_reason=trace.get("stop_reason"),
        steps_total=len(declared),
        steps_completed=sum(1 for s in declared if last_status.get(s) == StepStatus.OK),
        turns=len(views),
        latency_s=float(trace.get("duration_s") or 0.0),
        step_latency_s=step_latency,
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cost_usd=float(usage.get("cost_usd") or 0.0),
        model_calls=len(calls),
        gates=len(gates),
        gates_passed=sum(1 for g in gates if g.get("passed")),
        retries=sum(1 for e in events if e.get("kind") == RETRY),
        tool_calls=len(tools),
        tool_errors=sum(1 for t in tools if t.get("error")),
        tools_used=list(dict.fromkeys(str(t.get("name")) for t in tools)),
    )
