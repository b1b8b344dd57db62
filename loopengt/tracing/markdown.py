"""The markdown report of a trace: a header, a steps table, every model and tool call, and
the raw trace in a collapsed block at the end, so the report can be read back."""

from __future__ import annotations

import json
import re
from typing import Any

from loopengt.errors import UserInputError
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
    fmt_cost,
    fmt_duration,
    fmt_time,
    fmt_tokens,
    model_label,
    run_usage,
    timeline,
)

RAW_MARKER = "<!-- loopengt-trace -->"
RAW_BLOCK = re.compile(re.escape(RAW_MARKER) + r"\s*```json\n(.*?)\n```", re.DOTALL)


def to_markdown(trace: Trace) -> str:
    usage = run_usage(trace)
    lines = [
        f"# Run `{trace.get('run_id')}` — {trace.get('spec') or 'loop'}",
        "",
        "| | |",
        "|---|---|",
        f"| Status | **{trace.get('status')}** |",
        f"| Stop reason | {cell(trace.get('stop_reason') or '—')} |",
        f"| Tokens | {fmt_tokens(usage['input_tokens'], usage['output_tokens'])} |",
        f"| Cost | {fmt_cost(usage['cost_usd'])} |",
        f"| Duration | {fmt_duration(trace.get('duration_s'))} |",
        f"| Started | {fmt_time(trace.get('started'))} |",
        f"| Sessions | {trace.get('sessions', 1)} |",
        "",
        "## Steps",
        "",
        "| # | Step | Agent | Status | Duration | Model calls | Tokens | Tool calls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    entries = timeline(trace)
    steps = [e for e in entries if isinstance(e, StepView)]
    for s in steps:
        tokens = sum(s.tokens)
        lines.append(
            f"| {s.number} | {cell(s.node)} | {cell(s.agent or '—')} | {s.status} | "
            f"{fmt_duration(s.duration)} | {len(s.calls())} | {tokens} | "
            f"{len(s.calls(TOOL_CALL))} |"
        )
    lines += ["", "## Timeline", ""]
    for entry in entries:
        lines += step_section(entry) if isinstance(entry, StepView) else [f"- {note(entry)}", ""]
    if trace.get("outputs"):
        lines += ["## Outputs", ""]
        for name, value in dict(trace["outputs"]).items():
            text = value if isinstance(value, str) else json.dumps(value, indent=2)
            lines += [f"**{name}**", "", *fenced(text), ""]
    lines += [
        "<details><summary>Raw trace (JSON)</summary>",
        "",
        RAW_MARKER,
        "```json",
        json.dumps(trace, indent=2, ensure_ascii=False),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def step_section(step: StepView) -> list[str]:
    head = f"### {step.number}. {step.node}" + (f" ({step.agent})" if step.agent else "")
    status = step.status + (f": {step.error}" if step.error else "")
    lines = [head, "", f"_{status} · {fmt_duration(step.duration)}_", ""]
    for item in step.items:
        if item["kind"] == MODEL_CALL:
            lines += model_call(item)
        elif item["kind"] == TOOL_CALL:
            lines += tool_call(item)
        else:
            lines += [f"- {note(item)}", ""]
    return lines


def model_call(call: Event) -> list[str]:
    tokens = fmt_tokens(call.get("input_tokens") or 0, call.get("output_tokens") or 0)
    head = (
        f"- **model call** `{model_label(call)}` · {fmt_duration(call.get('latency_s'))} · "
        f"{tokens} · {fmt_cost(call.get('cost_usd'))}"
    )
    lines = [head, ""]
    messages = call.get("messages") or []
    if messages:
        lines += [f"  <details><summary>Prompt ({len(messages)} messages)</summary>", ""]
        for message in messages:
            lines += [f"  **{message.get('role')}**", ""]
            if message.get("content") or not message.get("tool_calls"):
                lines += [*fenced(message.get("content"), "  "), ""]
            for tc in message.get("tool_calls") or []:
                lines += [f"  - tool call `{tc.get('name')}` {inline(tc.get('args'))}", ""]
        lines += ["  </details>", ""]
    if call.get("error"):
        lines += [f"  Error: {call['error']}", ""]
    elif call.get("response") or not call.get("tool_calls"):
        lines += ["  Response:", "", *fenced(call.get("response"), "  "), ""]
    for tc in call.get("tool_calls") or []:
        lines += [f"  - asks for tool `{tc.get('name')}` {inline(tc.get('args'))}", ""]
    return lines


def tool_call(call: Event) -> list[str]:
    outcome = f"error: {call['error']}" if call.get("error") else f"→ {inline(call.get('result'))}"
    when = fmt_duration(call.get("latency_s"))
    return [
        f"- **tool call** `{call.get('name')}` {inline(call.get('args'))} {outcome} · {when}",
        "",
    ]


def note(event: Event) -> str:
    """One line for an event that is not a call."""
    kind = event.get("kind")
    if kind == GATE:
        verdict = "passed" if event.get("passed") else "failed"
        why = f": {event['reason']}" if event.get("reason") else ""
        return f"**gate** ({event.get('gate_kind')}, attempt {event.get('attempt')}) {verdict}{why}"
    if kind == RETRY:
        return (
            f"**retry** (after {'a failed gate' if event.get('cause') == 'gate' else 'an error'}, "
            f"attempt {event.get('attempt')}): {event.get('reason')}"
        )
    if kind == INTERRUPT:
        payload = event.get("payload")
        message = payload.get("message") if isinstance(payload, dict) else payload
        return f"**interrupt** waiting for an answer: {message}"
    if kind == STOP:
        return f"**stop** ({event.get('status')}): {event.get('reason')}"
    if kind == ERROR:
        return f"**error**: {event.get('error')}"
    if kind == RUN_START:
        line = f"**resumed** (session {event.get('session')}) at {fmt_time(event.get('ts'))}"
        return line + answer_text(event.get("answer"))
    if kind == RUN_END:
        return f"**session {event.get('session')} ended**: {event.get('status')}"
    return f"**{kind}**"


def from_markdown(text: str, where: str = "markdown") -> Trace:
    # the last block: a prompt quoted earlier in the report may contain a marker of its own
    found = next(reversed(list(RAW_BLOCK.finditer(text))), None)
    if found is None:
        raise UserInputError(f"{where}: no raw trace block (not a `loopengt trace` export)")
    try:
        trace: Trace = json.loads(found.group(1))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{where}: the raw trace block is not valid JSON: {exc}") from None
    return trace


# -- markdown helpers ---------------------------------------------------------------------------


def cell(value: Any) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def inline(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    ticks = "``" if "`" in text else "`"
    return f"{ticks} {text} {ticks}" if ticks == "``" else f"`{text}`"


def fenced(text: Any, indent: str = "") -> list[str]:
    """A fenced block longer than any backtick run inside, so the text cannot close it."""
    body = "" if text is None else str(text)
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return [indent + fence, *(indent + line for line in body.splitlines()), indent + fence]
