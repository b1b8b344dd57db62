"""TraceRecorder on real compiled specs with fake chat models: steps, model and tool calls,
gates, retries, interrupts and resumes, the live `.jsonl`, redaction, parallel branches."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from loopengt.compile import compile_spec
from loopengt.tracing import RunEvents, TraceRecorder
from loopengt.tracing.events import read_events
from tests.compilers.helpers import fake, spec_of, tool_call, with_usage
from tests.compilers.test_sequential_pattern import TOOL_SPEC
from tests.tracing.runner import kinds, lines_of, record, step_events

CHAIN = """
    name: chain
    goal: Test.
    agents: [{{name: writer}}, {{name: editor}}]
    steps:
      - {{name: a, agent: writer{a_extra}}}
      - {{name: b, agent: editor, depends_on: [a]}}
      - {{name: c, agent: writer, depends_on: [b]}}
    policy: {policy}
"""


def chain(policy: str = "{max_turns: 8}", a_extra: str = "") -> str:
    return CHAIN.format(policy=policy, a_extra=a_extra)


class ServerError(Exception):
    """Looks like an HTTP 500: the node's RetryPolicy runs it again."""

    status_code = 500


def test_steps_and_model_calls_in_order_with_tokens_and_agents(tmp_path: Path) -> None:
    spec = spec_of(chain())
    model = fake(with_usage("one", 10, 2), with_usage("two", 20, 4), "three")
    recorder, state = record(compile_spec(spec, models=model), spec, tmp_path)

    trace = json.loads(recorder.json_path.read_text())
    events = trace["events"]
    assert step_events(events) == [
        ("step_start", "a"),
        ("step_end", "a"),
        ("step_start", "b"),
        ("step_end", "b"),
        ("step_start", "c"),
        ("step_end", "c"),
    ]
    assert events[0]["kind"] == "run_start"
    assert events[-1]["kind"] == "run_end"
    calls = kinds(events, "model_call")
    assert [(c["step"], c["agent"], c["response"]) for c in calls] == [
        ("a", "writer", "one"),
        ("b", "editor", "two"),
        ("c", "writer", "three"),
    ]
    assert [(c["input_tokens"], c["output_tokens"]) for c in calls] == [(10, 2), (20, 4), (0, 0)]
    assert calls[0]["provider"] == "recordingfake"
    assert calls[0]["messages"][0]["role"] == "system"
    assert calls[0]["messages"][-1]["role"] == "user"
    assert calls[0]["messages"][-1]["content"].startswith("Goal: Test.")
    assert all(c["latency_s"] >= 0 for c in calls)
    # every call belongs to the step run it happened in
    starts = {e["step_id"]: e["step"] for e in kinds(events, "step_start")}
    assert [starts[c["step_id"]] for c in calls] == ["a", "b", "c"]
    ends = kinds(events, "step_end")
    assert all(e["status"] == "ok" and e["duration_s"] >= 0 for e in ends)

    assert trace["status"] == "completed" == state["status"]
    assert trace["outputs"] == {"a": "one", "b": "two", "c": "three"}
    assert trace["usage"]["total_tokens"] == 36
    assert trace["spec"] == "chain" and trace["run_id"] == "run-1"
    assert trace["duration_s"] >= 0 and trace["complete"] is True


def test_model_calls_are_priced_by_model_name(tmp_path: Path) -> None:
    spec = spec_of(chain())
    reply = with_usage("one", 1_000_000, 0)
    reply.response_metadata["model_name"] = "gpt-4o-mini"
    record(compile_spec(spec, models=fake(reply, "two", "three")), spec, tmp_path)

    [first, *_] = kinds(lines_of(tmp_path), "model_call")
    assert first["model"] == "gpt-4o-mini"
    assert first["cost_usd"] == pytest.approx(0.15)


def test_tool_calls_with_results_and_errors(tmp_path: Path) -> None:
    spec = spec_of(TOOL_SPEC)
    model = fake(
        tool_call("add", {"a": 2, "b": 3}, "c1"),
        tool_call("explode", {"text": "x"}, "c2"),
        "The sum is 5.",
    )
    record(compile_spec(spec, models=model), spec, tmp_path)

    events = lines_of(tmp_path)
    tools = kinds(events, "tool_call")
    assert [(t["name"], t["args"], t.get("result"), t.get("error")) for t in tools] == [
        ("add", {"a": 2, "b": 3}, "5", None),
        ("explode", {"text": "x"}, None, "ValueError: cannot handle 'x'"),
    ]
    assert all(t["step"] == "sum" and t["agent"] == "calc" for t in tools)
    calls = kinds(events, "model_call")
    assert calls[0]["tool_calls"] == [{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}]
    # the model's next prompt carries the tool's answer
    assert calls[1]["messages"][-1] == {"role": "tool", "content": "5"}
    # model and tool calls interleave as they happened
    assert [e["kind"] for e in kinds(events, "model_call", "tool_call")] == [
        "model_call",
        "tool_call",
        "model_call",
        "tool_call",
        "model_call",
    ]


def test_gate_results_and_the_retry_they_cause(tmp_path: Path) -> None:
    spec = spec_of(chain(a_extra=", gate: {kind: regex, pattern: '^DONE'}"))
    model = fake("a draft", "DONE: it", "b", "c")
    record(compile_spec(spec, models=model), spec, tmp_path)

    events = lines_of(tmp_path)
    gates = kinds(events, "gate")
    assert [(g["step"], g["gate_kind"], g["passed"], g["attempt"]) for g in gates] == [
        ("a", "regex", False, 1),
        ("a", "regex", True, 2),
    ]
    assert gates[0]["reason"] == "output does not match /^DONE/"
    [retry] = kinds(events, "retry")
    assert (retry["step"], retry["cause"], retry["attempt"]) == ("a", "gate", 2)
    assert retry["reason"] == "output does not match /^DONE/"
    order = [(e["kind"], e["step"]) for e in kinds(events, "gate", "retry", "step_start")]
    assert order[:5] == [
        ("step_start", "a"),
        ("gate", "a"),
        ("retry", "a"),
        ("step_start", "a"),
        ("gate", "a"),
    ]
    # the retry belongs to the second run of a
    assert retry["step_id"] == kinds(events, "step_start")[1]["step_id"]


def test_an_error_retried_by_the_retry_policy(tmp_path: Path) -> None:
    spec = spec_of(chain("{max_turns: 8, retry: {attempts: 3, backoff_seconds: 0}}"))
    model = fake("fine", "b", "c", raises=[ServerError("boom")])
    _, state = record(compile_spec(spec, models=model), spec, tmp_path)

    assert state["status"] == "completed"
    events = lines_of(tmp_path)
    assert step_events(events)[:4] == [
        ("step_start", "a"),
        ("step_end", "a"),
        ("step_start", "a"),
        ("step_end", "a"),
    ]
    first_end = kinds(events, "step_end")[0]
    assert first_end["status"] == "failed"  # this attempt; the retry then succeeds
    assert first_end["error"] == "ServerError: boom"
    [retry] = kinds(events, "retry")
    assert (retry["cause"], retry["attempt"], retry["reason"]) == ("error", 2, "ServerError: boom")
    assert [s["attempt"] for s in kinds(events, "step_start")][:2] == [1, 2]
    failed_call = kinds(events, "model_call")[0]
    assert failed_call["error"] == "ServerError: boom"


def test_errors_and_the_stop_reason_from_state_updates(tmp_path: Path) -> None:
    class BadRequest(Exception):
        status_code = 400

    spec = spec_of(chain())
    model = fake("never", raises=[BadRequest("invalid model name")])
    recorder, state = record(compile_spec(spec, models=model), spec, tmp_path)

    assert state["status"] == "failed"
    events = lines_of(tmp_path)
    [error] = kinds(events, "error")
    assert error["step"] == "a"
    assert error["error"] == "step 'a' failed after 1 attempt(s): invalid model name"
    [stop] = kinds(events, "stop")
    assert stop["reason"] == state["stop_reason"]
    assert stop["status"] == "failed"
    trace = json.loads(recorder.json_path.read_text())
    assert (trace["status"], trace["stop_reason"]) == ("failed", state["stop_reason"])
    assert not kinds(events, "retry")  # a 400 is not retried


APPROVAL = chain("{max_turns: 8, approvals: [{step: b, message: 'Publish b?'}]}")


def test_interrupt_then_resume_in_a_new_process_appends_both_sessions(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    spec = spec_of(APPROVAL)
    db = tmp_path / "loop.db"
    with sqlite3.connect(db, check_same_thread=False) as conn:
        graph = compile_spec(spec, models=fake("one"), checkpointer=SqliteSaver(conn))
        first, _ = record(graph, spec, runs, run_id="appr")
    conn.close()

    paused = json.loads(first.json_path.read_text())
    assert paused["status"] == "waiting_approval"
    [pending] = kinds(paused["events"], "interrupt")
    assert pending["payload"] == {"type": "approval", "step": "b", "message": "Publish b?"}
    assert pending["step"] == "b" and pending["agent"] == "editor"
    b_end = [e for e in kinds(paused["events"], "step_end") if e["step"] == "b"]
    assert b_end[0]["status"] == "waiting"  # for the approval

    # "loopengt approve": a fresh graph, model, connection and recorder
    with sqlite3.connect(db, check_same_thread=False) as conn:
        graph = compile_spec(spec, models=fake("two", "three"), checkpointer=SqliteSaver(conn))
        second, state = record(
            graph,
            spec,
            runs,
            run_id="appr",
            payload=Command(resume={"approved": True}),
            resumed=True,
        )
    conn.close()

    assert state["status"] == "completed"
    assert second.session == 2
    trace = json.loads(second.json_path.read_text())
    events = trace["events"]
    assert [e["kind"] for e in kinds(events, "run_start", "run_end")] == [
        "run_start",
        "run_end",
        "run_start",
        "run_end",
    ]
    assert [e["session"] for e in kinds(events, "run_start")] == [1, 2]
    assert kinds(events, "run_start")[1]["resumed"] is True
    assert [c["response"] for c in kinds(events, "model_call")] == ["one", "two", "three"]
    assert step_events(events) == [
        ("step_start", "a"),
        ("step_end", "a"),
        ("step_start", "b"),
        ("step_end", "b"),  # interrupted
        ("step_start", "b"),
        ("step_end", "b"),
        ("step_start", "c"),
        ("step_end", "c"),
    ]
    assert (trace["status"], trace["sessions"]) == ("completed", 2)
    assert trace["outputs"] == {"a": "one", "b": "two", "c": "three"}
    assert trace["started"] == events[0]["ts"]
    assert len(events) == len(read_events(runs / "appr.jsonl"))


def test_events_are_on_disk_before_finish(tmp_path: Path) -> None:
    spec = spec_of(chain())
    graph = compile_spec(spec, models=fake("one", "two", "three"))
    recorder = TraceRecorder("live", runs_dir=tmp_path, spec_name="chain")
    events = RunEvents("live")
    events.subscribe(recorder)
    config = {"callbacks": [events]}
    seen: list[list[str]] = []
    for chunk in graph.stream({"input": {}}, config, stream_mode="updates"):
        events.chunk("updates", chunk)
        # read by another handle, as a crash would leave it
        lines = (tmp_path / "live.jsonl").read_text().splitlines()
        seen.append([json.loads(line)["kind"] for line in lines])
    assert not recorder.json_path.exists()
    assert seen[0] == ["step_start", "model_call", "step_end"]
    assert seen[-1].count("step_end") == 3

    recorder.finish(status="completed")
    assert recorder.json_path.exists()


def test_secrets_from_the_environment_never_reach_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", secret)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "x" * 20)
    spec = spec_of(chain())
    model = fake(f"the key is {secret}", "two", "three")
    recorder, state = record(
        compile_spec(spec, models=model),
        spec,
        tmp_path,
        payload={"input": {"note": f"use {secret}"}},
    )

    assert state["outputs"]["a"] == f"the key is {secret}"  # the run itself is untouched
    for path in (recorder.jsonl_path, recorder.json_path):
        text = path.read_text()
        assert secret not in text and "ghp_" + "x" * 20 not in text
        assert "[redacted]" in text
    trace = json.loads(recorder.json_path.read_text())
    assert trace["outputs"]["a"] == "the key is [redacted]"


def test_long_prompts_and_responses_are_truncated(tmp_path: Path) -> None:
    spec = spec_of(chain())
    model = fake("x" * 500, "two", "three")
    record(compile_spec(spec, models=model), spec, tmp_path, max_chars=100)

    first = kinds(lines_of(tmp_path), "model_call")[0]
    assert first["response"] == "x" * 100 + "… [400 more chars]"
    second = kinds(lines_of(tmp_path), "model_call")[1]
    assert all(len(m["content"]) <= 130 for m in second["messages"])


def test_a_failing_subscriber_never_fails_the_run_unless_debugging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopengt.tracing import EventKind

    def broken(event: object) -> None:
        raise RuntimeError("display bug")

    monkeypatch.delenv("LOOPENGT_DEBUG", raising=False)
    events = RunEvents("sub")
    seen: list[str] = []
    events.subscribe(broken)
    events.subscribe(lambda e: seen.append(e.kind))
    events.publish(EventKind.RUN_START)
    assert seen == ["run_start"]  # the next subscriber still gets it

    monkeypatch.setenv("LOOPENGT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="display bug"):
        events.publish(EventKind.RUN_END)
