"""Trace exports: OpenTelemetry spans (checked with the SDK's in-memory exporter), json,
jsonl and markdown round trips through load_trace, the rich tree, a killed run's .jsonl."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from rich.console import Console

from loopengt.compile import compile_spec
from loopengt.errors import LoopengtError, UserInputError
from loopengt.tracing.events import Trace
from loopengt.tracing.exports import load_run, load_trace, to_json, to_jsonl, to_markdown, to_otel
from loopengt.tracing.render import render_tree
from tests.compilers.helpers import fake, spec_of, tool_call, with_usage
from tests.tracing.runner import record

SPEC = """
    name: calc
    goal: Compute.
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
      - {name: explode, kind: function, function: "tests.compilers.helpers:explode"}
    agents: [{name: solver, tools: [add, explode]}, {name: checker}]
    steps:
      - {name: solve, agent: solver}
      - name: check
        agent: checker
        depends_on: [solve]
        gate: {kind: regex, pattern: '^OK'}
    policy: {max_turns: 8}
"""


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    """A finished run: tool calls (one failing), tokens, a gate that fails once."""
    spec = spec_of(SPEC)
    model = fake(
        AIMessage(
            content="",
            tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        ),
        tool_call("explode", {"text": "x"}, "c2"),
        with_usage("The sum is 5.", 30, 5),
        with_usage("not sure | maybe", 8, 2),
        with_usage("OK: 5 is right", 9, 4),
    )
    recorder, _ = record(compile_spec(spec, models=model), spec, tmp_path / "runs")
    return load_trace(recorder.json_path)


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_otel_spans_nest_run_steps_and_calls_with_genai_attributes(trace: Trace) -> None:
    exporter = InMemorySpanExporter()
    count = to_otel(trace, exporter)

    spans = exporter.get_finished_spans()
    assert count == len(spans)
    names = sorted(s.name for s in spans)
    assert names == sorted(
        [
            "invoke_workflow calc",
            "invoke_agent solver",
            "invoke_agent checker",
            "invoke_agent checker",
            "chat unknown",
            "chat unknown",
            "chat unknown",
            "chat unknown",
            "chat unknown",
            "execute_tool add",
            "execute_tool explode",
        ]
    )
    by_name = spans_by_name(exporter)
    [root] = by_name["invoke_workflow calc"]
    [solver] = by_name["invoke_agent solver"]
    assert root.parent is None
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["gen_ai.conversation.id"] == "run-1"
    assert root.attributes["gen_ai.usage.input_tokens"] == 12 + 30 + 8 + 9
    assert root.attributes["gen_ai.usage.output_tokens"] == 3 + 5 + 2 + 4
    assert root.attributes["loopengt.status"] == "completed"
    # one trace; steps under the run; calls under their step
    assert len({s.context.trace_id for s in spans}) == 1
    for step in (*by_name["invoke_agent solver"], *by_name["invoke_agent checker"]):
        assert step.parent.span_id == root.context.span_id
    calls = [s for s in spans if s.name.startswith(("chat ", "execute_tool "))]
    solver_calls = [s for s in calls if s.parent.span_id == solver.context.span_id]
    assert len(solver_calls) == 5  # three model calls and two tool calls

    chats = sorted(by_name["chat unknown"], key=lambda s: s.start_time)
    first = chats[0]
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == "unknown"
    assert first.attributes["gen_ai.provider.name"] == "recordingfake"
    assert first.attributes["gen_ai.agent.name"] == "solver"
    assert first.attributes["gen_ai.usage.input_tokens"] == 12
    assert first.attributes["gen_ai.usage.output_tokens"] == 3
    assert json.loads(first.attributes["gen_ai.input.messages"])[0]["role"] == "system"
    [answer] = json.loads(first.attributes["gen_ai.output.messages"])
    assert answer["parts"] == [
        {"type": "tool_call", "id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}
    ]
    [failing] = by_name["execute_tool explode"]
    assert failing.attributes["gen_ai.tool.name"] == "explode"
    assert failing.status.status_code is StatusCode.ERROR
    [adding] = by_name["execute_tool add"]
    assert adding.attributes["gen_ai.tool.call.result"] == "5"
    assert adding.status.status_code is StatusCode.UNSET

    # times come from the trace, not from the export
    assert root.start_time == int(trace["started"] * 1e9)
    assert root.end_time == int(trace["ended"] * 1e9)
    for span in spans:
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
    # gates become span events on their step
    checker_events = [e for s in by_name["invoke_agent checker"] for e in s.events]
    assert [(e.name, e.attributes["loopengt.passed"]) for e in checker_events if e.name == "gate"]
    assert {e.attributes["loopengt.passed"] for e in checker_events if e.name == "gate"} == {
        True,
        False,
    }


def test_otel_console_exporter_when_no_endpoint(
    trace: Trace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from loopengt.tracing.otel import default_exporter, export

    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "spans.txt"
    with out.open("w") as fh:
        assert type(default_exporter(fh)).__name__ == "ConsoleSpanExporter"
        assert export(trace, out=fh) == 11
    assert out.read_text().count('"name": "invoke_workflow calc"') == 1

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    exporter = default_exporter()
    assert type(exporter).__name__ == "OTLPSpanExporter"
    exporter.shutdown()


def test_missing_opentelemetry_is_a_one_line_hint(
    trace: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails
    with pytest.raises(UserInputError) as err:
        to_otel(trace)
    assert str(err.value) == (
        "OpenTelemetry export needs the otel extra: pip install 'loopengt[otel]'"
    )


def test_json_jsonl_and_markdown_round_trip(trace: Trace, tmp_path: Path) -> None:
    for name, text in (
        ("t.json", to_json(trace)),
        ("t.jsonl", to_jsonl(trace)),
        ("t.md", to_markdown(trace)),
        ("t.txt", to_markdown(trace)),  # found by content, whatever the suffix
    ):
        path = tmp_path / name
        path.write_text(text)
        assert load_trace(path) == trace, name


def test_markdown_report_reads_like_a_report(trace: Trace) -> None:
    text = to_markdown(trace)

    assert text.startswith("# Run `run-1` — calc\n")
    assert "| Status | **completed** |" in text
    assert "| Tokens | 73 tok (59 in, 14 out) |" in text
    table = text[text.index("## Steps") : text.index("## Timeline")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[1] for r in rows[1:]] == [
        "solve",
        "check",
        "check",
    ]  # no pass-through node
    assert "| 1 | solve | solver | ok |" in rows[1]
    assert '- **tool call** `explode` `{"text": "x"}` error: ValueError' in text
    assert "- **gate** (regex, attempt 1) failed: output does not match /^OK/" in text
    assert "- **retry** (after a failed gate, attempt 2)" in text
    assert "not sure | maybe" in text  # inside a fenced response: no escaping needed
    assert text.rstrip().endswith("</details>")


def test_tree_shows_steps_calls_gates_and_retries_with_timings(trace: Trace) -> None:
    console = Console(width=200, record=True, color_system=None)
    console.print(render_tree(trace))
    lines = console.export_text().splitlines()

    assert lines[0].startswith("run run-1 · calc · completed · ")
    assert "73 tok (59 in, 14 out)" in lines[0]
    steps = [line for line in lines if line.lstrip("│ ").startswith(("├── ", "└── "))]
    steps = [s.split("── ", 1)[1] for s in steps if s.split("── ", 1)[1][:1].isdigit()]
    assert [s.split(" · ")[0] for s in steps] == [
        "1. solve (solver)",
        "2. check (checker)",
        "3. check (checker)",
    ]  # `check__passed`, a pass-through node, is left out of the tree
    assert "check__passed" not in "\n".join(lines)
    text = "\n".join(lines)
    assert "tool add ✓" in text
    assert "tool explode ✗ ValueError: cannot handle 'x'" in text
    assert "gate regex ✗ fail: output does not match /^OK/" in text
    assert "gate regex ✓ pass" in text
    assert "↻ retry #2 after failed gate" in text
    assert '→ "The sum is 5."' in text
    assert "→ tools: add" in text


def test_a_killed_runs_jsonl_still_loads_and_renders(trace: Trace, tmp_path: Path) -> None:
    events = trace["events"]
    cut = next(
        i for i, e in enumerate(events) if e["kind"] == "step_start" and e["step"] == "check"
    )
    lines = to_jsonl({"events": events[: cut + 2]})
    path = tmp_path / "killed.jsonl"
    path.write_text(lines + '{"ts": 1.0, "kind": "model_ca')  # a line cut short by the kill

    loaded = load_trace(path)
    assert loaded["status"] == "running" and loaded["complete"] is False
    assert loaded["ended"] is None
    assert loaded["events"] == events[: cut + 2]
    console = Console(width=200, record=True, color_system=None)
    console.print(render_tree(loaded))
    text = console.export_text()
    assert "no run_end yet" in text
    assert "2. check (checker) · running" in text


def test_load_run_prefers_the_jsonl_when_it_has_moved_on(trace: Trace, tmp_path: Path) -> None:
    runs = tmp_path / "elsewhere"
    runs.mkdir()
    (runs / "r.json").write_text(to_json(trace))
    assert load_run("r", runs) == trace
    resumed = {"ts": trace["ended"] + 5, "kind": "run_start", "run_id": "run-1", "session": 2}
    (runs / "r.jsonl").write_text(to_jsonl(trace) + json.dumps(resumed) + "\n")
    fresh = load_run("r", runs)
    assert fresh["status"] == "running" and fresh["sessions"] == 2
    with pytest.raises(UserInputError, match="no trace for run 'nope' in "):
        load_run("nope", runs)


def test_load_trace_rejects_what_is_not_a_trace(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"a": 1}')
    (tmp_path / "x.md").write_text("# notes\n")
    for name in ("x.json", "x.md", "missing.json"):
        with pytest.raises(UserInputError):
            load_trace(tmp_path / name)


class OtlpCollector(BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP receiver: keeps each request's path, content type and body."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.received.append((self.path, self.headers.get("content-type") or "", body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()


def test_otlp_export_reaches_the_endpoint_from_the_environment(
    trace: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    OtlpCollector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), OtlpCollector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert to_otel(trace) == 11
    finally:
        server.shutdown()
        server.server_close()

    [(path, content_type, body)] = OtlpCollector.received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans)[:2] == ["chat unknown", "chat unknown"]
    resource = request.resource_spans[0].resource.attributes
    assert {a.key: a.value.string_value for a in resource}["service.name"] == "loopengt"


def test_an_unreachable_otlp_endpoint_is_one_error(
    trace: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    with pytest.raises(LoopengtError, match=f"could not send 11 spans to http://127.0.0.1:{port}/"):
        to_otel(trace)


APPROVAL = """
    name: publish
    goal: Test.
    agents: [{name: w}]
    steps: [{name: a}, {name: b, depends_on: [a]}]
    policy: {max_turns: 4, approvals: [{step: b, message: 'Publish b?'}]}
"""


def test_interrupts_resumes_and_stops_in_the_tree_and_the_report(tmp_path: Path) -> None:
    spec = spec_of(APPROVAL)
    graph = compile_spec(spec, models=fake("one", "two"), checkpointer=InMemorySaver())
    record(graph, spec, tmp_path, run_id="p")
    no = Command(resume={"approved": False, "comment": "not now"})
    recorder, state = record(graph, spec, tmp_path, run_id="p", payload=no, resumed=True)
    assert state["status"] == "rejected"
    trace = load_trace(recorder.json_path)

    console = Console(width=200, record=True, color_system=None)
    console.print(render_tree(trace))
    tree = console.export_text()
    assert "⏸ interrupt: Publish b?" in tree
    assert "session 1 ended: waiting_approval" in tree
    assert "↪ resumed (session 2)" in tree
    assert "stop (rejected): rejected: step 'b' was not approved (not now)" in tree
    assert tree.index("interrupt") < tree.index("session 1 ended") < tree.index("resumed")

    report = to_markdown(trace)
    assert "- **interrupt** waiting for an answer: Publish b?" in report
    assert "- **session 1 ended**: waiting_approval" in report
    assert "- **resumed** (session 2)" in report
    assert "- **stop** (rejected): rejected: step 'b' was not approved (not now)" in report
    assert "| Stop reason | rejected: step 'b' was not approved (not now) |" in report
    assert load_trace_text(tmp_path / "p.md", report) == trace


def load_trace_text(path: Path, text: str) -> Trace:
    path.write_text(text)
    return load_trace(path)
