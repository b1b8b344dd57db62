"""The recorder in real conditions: a process killed with SIGKILL mid-run, LangSmith tracing
switched on beside it, and the real ChatOpenAI client against the scripted server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from langchain_openai import ChatOpenAI

from loopengt.compile import compile_spec
from loopengt.tracing.exports import load_run
from tests.compilers.helpers import spec_of
from tests.support.openai_server import ScriptedOpenAIServer, ToolCallReply
from tests.tracing.runner import kinds, lines_of, record

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from pathlib import Path
from typing import ClassVar
from loopengt.compile import compile_spec
from tests.compilers.helpers import fake, spec_of
from tests.tracing.runner import record
spec = spec_of('''
    name: slow
    goal: Test.
    agents: [{name: w}]
    steps: [{name: a}, {name: b, depends_on: [a]}, {name: c, depends_on: [b]}]
''')
models = fake("one", "two", "three", sleep=float(sys.argv[2]))
record(compile_spec(spec, models=models), spec, Path(sys.argv[1]), run_id="slow")
if len(sys.argv) > 3:  # LangSmith: wait for the tracer's uploads before exiting
    from langchain_core.tracers.langchain import wait_for_all_tracers

    wait_for_all_tracers()
"""


def child(runs: Path, sleep: float, *extra: str) -> list[str]:
    """A process recording the three-step spec `slow` (each model call takes ``sleep``)."""
    return [sys.executable, "-c", CHILD, str(runs), str(sleep), *extra]


def test_a_sigkilled_run_keeps_its_trace_up_to_the_kill(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen(child(runs, 0.5), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            path = runs / "slow.jsonl"
            events = lines_of(runs, "slow") if path.exists() else []
            if any(e["kind"] == "step_start" and e["step"] == "b" for e in events):
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    assert not (runs / "slow.json").exists()
    trace = load_run("slow", runs)
    assert trace["status"] == "running" and trace["complete"] is False
    steps = [(e["kind"], e["step"]) for e in kinds(trace["events"], "step_start", "step_end")]
    assert steps == [("step_start", "a"), ("step_end", "a"), ("step_start", "b")]
    assert [c["response"] for c in kinds(trace["events"], "model_call")] == ["one"]


class Collector(BaseHTTPRequestHandler):
    """Stands in for the LangSmith API: accepts everything, keeps the request bodies."""

    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def handle_any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.bodies.append((self.path, self.rfile.read(length) if length else b""))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PATCH = handle_any


@pytest.fixture
def langsmith_api() -> Iterator[str]:
    Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_langsmith_tracing_keeps_working_beside_the_recorder(
    tmp_path: Path, langsmith_api: str
) -> None:
    env = {
        **os.environ,
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": langsmith_api,
        "LANGSMITH_API_KEY": "lsv2-test-0123456789",
    }
    result = subprocess.run(
        child(tmp_path, 0, "langsmith"), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    uploads = b"".join(body for path, body in Collector.bodies if path.startswith("/runs"))
    for name in (b'"name":"slow"', b'"name":"a"', b'"name":"b"', b'"name":"c"'):
        assert name in uploads  # LangSmith got the graph and its nodes
    events = lines_of(tmp_path, "slow")
    assert [e["step"] for e in kinds(events, "step_start")] == ["a", "b", "c"]
    text = (tmp_path / "slow.json").read_text()
    assert "lsv2-test-0123456789" not in text


def test_real_openai_client_model_name_provider_tokens_and_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-key-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    spec = spec_of("""
        name: remote
        goal: Compute.
        tools: [{name: add, kind: function, function: "tests.compilers.helpers:add"}]
        agents: [{name: calc, tools: [add]}]
        steps: [{name: sum}]
        policy: {max_turns: 3}
    """)
    with ScriptedOpenAIServer([ToolCallReply("add", {"a": 2, "b": 3}), "It is 5."]) as server:
        model = ChatOpenAI(base_url=server.base_url, model="gpt-4o-mini", max_retries=0)
        recorder, state = record(compile_spec(spec, models=model), spec, tmp_path)

    assert state["outputs"] == {"sum": "It is 5."}
    events = json.loads(recorder.json_path.read_text())["events"]
    calls = kinds(events, "model_call")
    assert [(c["model"], c["provider"]) for c in calls] == [("gpt-4o-mini", "openai")] * 2
    assert all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls)
    assert all(c["cost_usd"] > 0 for c in calls)  # gpt-4o-mini has a price
    assert calls[1]["response"] == "It is 5."
    [tool] = kinds(events, "tool_call")
    assert (tool["name"], tool["args"], tool["result"]) == ("add", {"a": 2, "b": 3}, "5")
    for path in (recorder.json_path, recorder.jsonl_path):
        assert key not in path.read_text()
