"""A trace regrouped for people: its steps in the order they started, each with the calls,
gates and retries that happened in it. The tree, the markdown report and the OTel export
all read a trace through this."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loopengt.status import StepStatus
from loopengt.tracing.events import (
    MODEL_CALL,
    RUN_END,
    RUN_START,
    STEP_END,
    STEP_START,
    Event,
    Trace,
)


@dataclass
class StepView:
    number: int
    node: str
    step_id: str
    agent: str | None
    session: int
    start: float
    end: float | None = None
    status: str = StepStatus.RUNNING  # no step_end (yet): still going, or killed
    error: str | None = None
    items: list[Event] = field(default_factory=list)  # calls, gates, retries, ... in order

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    def calls(self, kind: str = MODEL_CALL) -> list[Event]:
        return [e for e in self.items if e["kind"] == kind]

    @property
    def tokens(self) -> tuple[int, int]:
        calls = self.calls()
        return (
            sum(c.get("input_tokens") or 0 for c in calls),
            sum(c.get("output_tokens") or 0 for c in calls),
        )

    @property
    def cost(self) -> float:
        return sum(c.get("cost_usd") or 0.0 for c in self.calls())


Entry = StepView | Event


def timeline(trace: Trace) -> list[Entry]:
    """Steps (at the place they started) and the run-level events between them: resumed
    sessions, the end of earlier sessions, errors and stops outside any step."""
    entries: list[Entry] = []
    steps: dict[str, StepView] = {}
    pending: dict[str, list[Event]] = {}  # events of a step logged before its step_start
    events: list[Event] = trace.get("events") or []
    last_session = max((e.get("session") or 1 for e in events), default=1)
    for event in events:
        kind, step_id = event.get("kind"), event.get("step_id")
        if kind == STEP_START and step_id:
            view = StepView(
                number=len(steps) + 1,
                node=str(event.get("step")),
                step_id=step_id,
                agent=event.get("agent"),
                session=event.get("session") or 1,
                start=event["ts"],
                items=pending.pop(step_id, []),
            )
            steps[step_id] = view
            entries.append(view)
        elif kind == STEP_END and step_id in steps:
            view = steps[step_id]
            view.end, view.status = event["ts"], event.get("status", "ok")
            view.error = event.get("error")
        elif step_id in steps:
            steps[step_id].items.append(event)
        elif step_id:
            pending.setdefault(step_id, []).append(event)  # a retry comes before its step
        elif run_level(event, last_session):
            entries.append(event)
    # events of a step whose start is missing (not written by a crashed process) still show
    orphans = [e for items in pending.values() for e in items]
    orphans.sort(key=lambda e: float(e["ts"]))
    entries.extend(orphans)
    kept = [e for e in entries if not (isinstance(e, StepView) and plumbing(e))]
    for number, view in enumerate((e for e in kept if isinstance(e, StepView)), 1):
        view.number = number
    return kept


def plumbing(step: StepView) -> bool:
    """A pass-through node the compiler adds (`X__passed`, `X__join`) that did nothing
    worth showing: no trace view lists it as a step (the raw JSON events keep it)."""
    return "__" in step.node and not step.items and step.status == "ok"


def run_level(event: Event, last_session: int) -> bool:
    """Shown between the steps: a resumed session's start, an earlier session's end (it
    paused for an approval, or was interrupted), and errors or stops outside a step."""
    kind, session = event.get("kind"), event.get("session") or 1
    if kind == RUN_START:
        return session > 1
    if kind == RUN_END:
        return session < last_session
    return True


def step_views(trace: Trace) -> list[StepView]:
    return [e for e in timeline(trace) if isinstance(e, StepView)]


# -- formatting shared by the tree and the markdown report ----------------------------------------


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def fmt_tokens(tokens_in: float, tokens_out: float) -> str:
    return f"{int(tokens_in + tokens_out)} tok ({int(tokens_in)} in, {int(tokens_out)} out)"


def fmt_cost(cost: float | None) -> str:
    return f"${cost or 0:.4f}"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def first_line(text: Any, limit: int = 80) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_usage(trace: Trace) -> dict[str, float]:
    usage = trace.get("usage") or {}
    return {k: usage.get(k) or 0 for k in ("input_tokens", "output_tokens", "cost_usd")}


def model_label(call: Event) -> str:
    model = call.get("model") or "model"
    return f"{model} ({call['provider']})" if call.get("provider") else str(model)


def tool_label(call: Event) -> str:
    return str(call.get("name") or "tool")


def answer_text(answer: Any) -> str:
    """`: approved ("looks fine")` for a session that answered an approval, else ''."""
    if not isinstance(answer, dict):
        return ""
    verdict = "approved" if answer.get("approved") else "rejected"
    comment = answer.get("comment")
    return f": {verdict}" + (f" ({comment!r})" if comment else "")
