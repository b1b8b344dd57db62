"""`loopengt trace RUN_ID`: the trace as a rich tree with timings.

run r1 · tools · completed · 1.20 s · 13 tok (10 in, 3 out) · $0.0000
├── 1. sum (calc) · ok · 0.80 s · 13 tok
│   ├── chat gpt-4o-mini (openai) · 0.30 s · 10 tok → "The sum is 5."
│   ├── tool add ✓ · 2 ms
│   └── gate regex ✓
└── stop: stop_condition: done
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.tree import Tree

from loopengt.status import RunStatus, StepStatus
from loopengt.tracing.events import (
    ERROR,
    GATE,
    INTERRUPT,
    MODEL_CALL,
    RETRY,
    RUN_END,
    RUN_START,
    STOP,
    TOOL_CALL,
    Event,
    Trace,
)
from loopengt.tracing.views import (
    StepView,
    answer_text,
    first_line,
    fmt_cost,
    fmt_duration,
    fmt_time,
    fmt_tokens,
    model_label,
    run_usage,
    timeline,
)

# one colour per status of the one vocabulary (loopengt.status); "error" is what traces
# written before StepStatus called a failed attempt
STATUS_STYLE = {
    RunStatus.COMPLETED: "green",
    RunStatus.RUNNING: "cyan",
    RunStatus.WAITING_APPROVAL: "yellow",
    RunStatus.INTERRUPTED: "yellow",
    RunStatus.STOPPED: "yellow",
    RunStatus.FAILED: "red",
    RunStatus.REJECTED: "red",
    StepStatus.OK: "green",
    StepStatus.TIMED_OUT: "yellow",
    StepStatus.SKIPPED: "dim",
    StepStatus.WAITING: "yellow",
    "error": "red",
}


def status_text(status: Any) -> str:
    style = STATUS_STYLE.get(str(status), "white")
    return f"[{style}]{escape(str(status))}[/]"


def render_tree(trace: Trace) -> Tree:
    usage = run_usage(trace)
    head = [
        f"[bold]run {escape(str(trace.get('run_id')))}[/]",
        escape(str(trace.get("spec") or "loop")),
        status_text(trace.get("status")),
        fmt_duration(trace.get("duration_s")),
        fmt_tokens(usage["input_tokens"], usage["output_tokens"]),
        fmt_cost(usage["cost_usd"]),
    ]
    if not trace.get("complete", True):
        head.append("[cyan](no run_end yet: still running, or the process was killed)[/]")
    tree = Tree(" · ".join(head))
    for entry in timeline(trace):
        if isinstance(entry, StepView):
            add_step(tree, entry)
        else:
            tree.add(event_line(entry))
    if trace.get("stop_reason") and not any(
        e.get("kind") == STOP for e in trace.get("events") or []
    ):
        tree.add(f"[yellow]stop[/]: {escape(str(trace['stop_reason']))}")
    return tree


def add_step(tree: Tree, step: StepView) -> None:
    tokens_in, tokens_out = step.tokens
    parts = [
        f"[bold]{step.number}. {escape(step.node)}[/]"
        + (f" ({escape(step.agent)})" if step.agent else ""),
        status_text(step.status),
        fmt_duration(step.duration),
    ]
    if tokens_in or tokens_out:
        parts.append(f"{tokens_in + tokens_out} tok")
    if step.error:
        parts.append(f"[red]{escape(first_line(step.error, 120))}[/]")
    branch = tree.add(" · ".join(parts))
    for item in step.items:
        branch.add(item_line(item))


def item_line(event: Event) -> str:
    kind = event.get("kind")
    if kind == MODEL_CALL:
        tokens = fmt_tokens(event.get("input_tokens") or 0, event.get("output_tokens") or 0)
        line = f"chat {escape(model_label(event))} · {fmt_duration(event.get('latency_s'))} · "
        line += tokens
        if event.get("error"):
            return line + f" · [red]{escape(first_line(event['error'], 120))}[/]"
        calls = [str(c.get("name")) for c in event.get("tool_calls") or []]
        if calls:
            return line + f" → tools: {escape(', '.join(calls))}"
        return line + f' → "{escape(first_line(event.get("response")))}"'
    if kind == TOOL_CALL:
        name = escape(str(event.get("name")))
        took = fmt_duration(event.get("latency_s"))
        if event.get("error"):
            return f"tool {name} [red]✗ {escape(first_line(event['error'], 120))}[/] · {took}"
        return f"tool {name} [green]✓[/] · {took} → {escape(first_line(event.get('result')))}"
    if kind == GATE:
        mark = "[green]✓ pass[/]" if event.get("passed") else "[red]✗ fail[/]"
        reason = f": {escape(first_line(event.get('reason'), 120))}" if event.get("reason") else ""
        return f"gate {escape(str(event.get('gate_kind')))} {mark}{reason}"
    if kind == RETRY:
        cause = "failed gate" if event.get("cause") == "gate" else "error"
        why = escape(first_line(event.get("reason"), 120))
        return f"[yellow]↻ retry[/] #{event.get('attempt')} after {cause}: {why}"
    return event_line(event)


def event_line(event: Event) -> str:
    kind = event.get("kind")
    if kind == INTERRUPT:
        payload = event.get("payload")
        message = payload.get("message") if isinstance(payload, dict) else payload
        return f"[yellow]⏸ interrupt[/]: {escape(first_line(message, 120))}"
    if kind == STOP:
        return f"[yellow]stop[/] ({escape(str(event.get('status')))}): " + escape(
            str(event.get("reason"))
        )
    if kind == ERROR:
        return f"[red]error[/]: {escape(first_line(event.get('error'), 160))}"
    if kind == RUN_START:
        line = f"[cyan]↪ resumed[/] (session {event.get('session')}) at {fmt_time(event['ts'])}"
        return line + escape(answer_text(event.get("answer")))
    if kind == RUN_END:
        status = status_text(event.get("status"))
        return f"[dim]session {event.get('session')} ended[/]: {status}"
    return escape(str(kind))
