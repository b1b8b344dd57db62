"""Reading traces back and writing them out: JSON, JSON lines, markdown, OpenTelemetry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loopengt.errors import UserInputError
from loopengt.tracing.events import Trace, dumps_line, read_events, summarize
from loopengt.tracing.markdown import from_markdown, to_markdown

__all__ = [
    "load_run",
    "load_trace",
    "to_json",
    "to_jsonl",
    "to_markdown",
    "to_otel",
]


def load_trace(path: Path | str) -> Trace:
    """A trace from `runs/<id>.json`, the `.jsonl` of a run still going (or killed), or a
    markdown export (its raw-trace block)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such trace file")
    if path.suffix == ".jsonl":
        return trace_from_jsonl(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".md", ".markdown"):
        return from_markdown(text, str(path))
    try:
        trace = json.loads(text)
    except json.JSONDecodeError:
        if text.lstrip().startswith("#") or "<details>" in text:
            return from_markdown(text, str(path))
        return trace_from_jsonl(path)  # a JSON-lines file with another suffix
    if not isinstance(trace, dict) or not isinstance(trace.get("events"), list):
        raise UserInputError(f"{path}: not a loopengt trace (no 'events' list)")
    return trace


def trace_from_jsonl(path: Path) -> Trace:
    events = read_events(path)
    if not events:
        raise UserInputError(f"{path}: not a loopengt trace (no events)")
    return summarize(events)


def load_run(run_id: str, runs_dir: Path | str = Path(".loopengt/runs")) -> Trace:
    """The freshest trace of a run: its `.json` unless the `.jsonl` has moved on since (the
    run was resumed and is running again, or was killed)."""
    runs_dir = Path(runs_dir)
    summary, lines = runs_dir / f"{run_id}.json", runs_dir / f"{run_id}.jsonl"
    trace = load_trace(summary) if summary.is_file() else None
    if lines.is_file():
        events = read_events(lines)
        if trace is None or len(events) > len(trace["events"]):
            return summarize(events, run_id=run_id)
    if trace is None:
        from loopengt.project import shown_path

        where = shown_path(runs_dir)
        raise UserInputError(f"no trace for run '{run_id}' in {where} (see `loopengt runs`)")
    return trace


def to_json(trace: Trace) -> str:
    return json.dumps(trace, indent=2, ensure_ascii=False) + "\n"


def to_jsonl(trace: Trace) -> str:
    return "".join(dumps_line(event) for event in trace.get("events") or [])


def to_otel(trace: Trace, exporter: Any = None) -> int:
    """Export the trace as OpenTelemetry spans; returns how many were exported. See
    `loopengt.tracing.otel.export`."""
    from loopengt.tracing.otel import export

    return export(trace, exporter)
