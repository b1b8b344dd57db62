"""`loopengt run/resume/approve/runs` as a user meets them: inputs, `--json`, exit codes and
one-line errors, a failing provider then `resume`, Ctrl-C then `resume`, `runs --status`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.runs.helpers import (
    error_lines,
    finish,
    loopengt,
    make_project,
    result_json,
    run_list,
    start_loopengt,
    stored_run,
    wait_until,
    write_spec,
)
from tests.support.openai_server import (
    Delayed,
    ErrorReply,
    Reply,
    ScriptedOpenAIServer,
    echo_responder,
    last_user_text,
)

WITH_INPUTS = """
    name: brief
    goal: Write a brief.
    inputs:
      topic: {description: What to write about.}
      count: {description: How many points.}
      tone: {required: false, default: plain}
    agents:
      - {name: writer, instructions: You write briefs.}
    steps:
      - {name: write, prompt: "write {{input.count}} points on {{input.topic}}, {{input.tone}}"}
"""

TWO_STEPS = """
    name: two-steps
    goal: Do two things.
    agents:
      - {name: worker, instructions: You work.}
    steps:
      - {name: s1, prompt: "step one"}
      - {name: s2, prompt: "step two after {{s1}}", depends_on: [s1]}
    policy:
      retry: {attempts: 2, backoff_seconds: 0.01, max_backoff_seconds: 0.01}
"""


@pytest.fixture
def project(tmp_path: Path, echo_server: ScriptedOpenAIServer) -> Path:
    root = make_project(tmp_path, echo_server.base_url)
    write_spec(root, "brief.yaml", WITH_INPUTS)
    write_spec(root, "two.yaml", TWO_STEPS)
    return root


def test_inputs_from_file_and_flags_with_json_result(project: Path) -> None:
    (project / "inputs.json").write_text(json.dumps({"topic": "owls", "count": 2}))
    proc = loopengt(
        project, "run", "brief.yaml", "--input-file", "inputs.json", "-i", "count=3", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    result = result_json(proc)
    assert set(result) == {
        "run_id",
        "status",
        "stop_reason",
        "outputs",
        "usage",
        "trace_path",
        "pending_approval",
        "duration_s",
    }
    assert result["run_id"].startswith("brief-")  # a generated id names the spec
    assert result["status"] == "completed"
    assert result["stop_reason"] is None
    # --input overrides the file; the declared default fills `tone`
    assert result["outputs"] == {"write": "echo: write 3 points on owls, plain"}
    assert result["usage"]["model_calls"] == 1
    assert result["usage"]["total_tokens"] > 0
    assert json.loads((project / result["trace_path"]).read_text())["run_id"] == result["run_id"]
    _, state = stored_run(project, result["run_id"])
    assert state["input"] == {"topic": "owls", "count": 3, "tone": "plain"}  # 3 is a number

    # the run index: a table for people, JSON filtered by status for scripts
    table = loopengt(project, "runs")
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if result["run_id"] in line)
    assert row.split()[1:4] == ["brief", "completed", "1"]
    completed = run_list(project, "--status", "completed")
    assert [r["run_id"] for r in completed] == [result["run_id"]]
    assert completed[0]["tokens"] == result["usage"]["total_tokens"]
    assert "spec_text" not in completed[0]
    assert run_list(project, "--status", "failed") == []


def test_missing_or_unknown_input_is_one_line_and_starts_nothing(
    project: Path, echo_server: ScriptedOpenAIServer
) -> None:
    missing = loopengt(project, "run", "brief.yaml", "-i", "count=1")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: missing input 'topic' (What to write about.): pass --input topic=VALUE"
    ]
    unknown = loopengt(project, "run", "brief.yaml", "-i", "topic=x", "-i", "count=1", "-i", "k=v")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown input 'k'; the spec declares: topic, count, tone"
    ]
    assert echo_server.request_count == 0
    assert run_list(project) == []


def test_failing_provider_then_resume_reruns_only_the_failed_step(tmp_path: Path) -> None:
    # step 1 answers; step 2 gets a 500 on both attempts the retry policy allows
    replies: list[Reply] = ["one", ErrorReply(500), ErrorReply(500)]
    with ScriptedOpenAIServer(replies) as server:
        project = make_project(tmp_path, server.base_url)
        write_spec(project, "two.yaml", TWO_STEPS)
        failed = loopengt(project, "run", "two.yaml", "--run-id", "f1")
        assert failed.returncode == 1
        assert "run f1  failed" in failed.stdout
        reasons = [line for line in failed.stdout.splitlines() if line.startswith("stop reason:")]
        assert len(reasons) == 1
        assert "step 's2' failed after 2 attempt(s): openai: server error 500" in reasons[0]
        assert "Traceback" not in failed.stderr
        assert "retry the failed step: loopengt resume f1" in failed.stderr
        assert server.request_count == 3
        assert [r["run_id"] for r in run_list(project, "--status", "failed")] == ["f1"]

        server.add_replies("two, at last")  # the provider is fixed
        resumed = loopengt(project, "resume", "f1", "--json")
        assert resumed.returncode == 0, resumed.stderr
        requests = server.requests

    result = result_json(resumed)
    assert result["status"] == "completed"
    assert result["stop_reason"] is None
    assert result["outputs"] == {"s1": "one", "s2": "two, at last"}
    # one more request, for step 2 only
    assert len(requests) == 4
    assert last_user_text(requests[3]) == "step two after one"
    _, state = stored_run(project, "f1")
    assert state["visits"] == {"s1": 1, "s2": 1}
    assert [r["run_id"] for r in run_list(project, "--status", "completed")] == ["f1"]
    assert run_list(project, "--status", "failed") == []


def test_ctrl_c_exits_130_and_resume_finishes(tmp_path: Path) -> None:
    replies: list[Reply] = ["one", Delayed("never delivered", 30)]
    with ScriptedOpenAIServer(replies, responder=echo_responder) as server:
        project = make_project(tmp_path, server.base_url)
        write_spec(project, "two.yaml", TWO_STEPS)
        proc = start_loopengt(project, "run", "two.yaml", "--run-id", "i1")
        try:
            wait_until(lambda: server.request_count >= 2, what="the slow step-2 request")
            # a second process must not drive the same run while the first still does
            clash = loopengt(project, "resume", "i1")
            assert clash.returncode == 2
            assert clash.stderr.strip().splitlines() == [
                f"error: run 'i1' is still running (pid {proc.pid}); stop it first"
            ]
            assert server.request_count == 2
        finally:
            proc.send_signal(signal.SIGINT)
        _, stderr = finish(proc, timeout=20)
        assert proc.returncode == 130, stderr
        assert error_lines(stderr) == [
            "error: run i1 interrupted; continue it with `loopengt resume i1`"
        ]
        assert stored_run(project, "i1")[0].status == "interrupted"

        resumed = loopengt(project, "resume", "i1", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert server.request_count == 3  # step 1 was not asked again
    result = result_json(resumed)
    assert result["status"] == "completed"
    assert result["outputs"] == {"s1": "one", "s2": "echo: step two after one"}


def test_bad_spec_is_exit_2_naming_the_file(project: Path) -> None:
    write_spec(project, "bad.yaml", "name: bad\nagents: [{name: w}]\nsteps: [{name: a}]\n")
    proc = loopengt(project, "run", "bad.yaml")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bad.yaml:")
    assert "goal" in lines[0]
    assert run_list(project) == []


@pytest.mark.parametrize(
    "args",
    [("resume", "nope"), ("approve", "nope"), ("reject", "nope"), ("runs", "show", "nope")],
)
def test_unknown_run_id_is_exit_2_in_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / ".loopengt").mkdir()
    proc = loopengt(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: no run 'nope' in .loopengt/loopengt.db (see `loopengt runs`)"
    ]


def test_record_and_replay_together_is_exit_2(project: Path) -> None:
    proc = loopengt(project, "run", "two.yaml", "--record", "a.yaml", "--replay", "b.yaml")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --record and --replay cannot be used together"
    ]


def test_a_run_id_that_is_not_a_file_name_is_refused(
    project: Path, echo_server: ScriptedOpenAIServer
) -> None:
    # the id names `.loopengt/runs/<id>.json`: a path in it would write elsewhere
    proc = loopengt(project, "run", "two.yaml", "--run-id", "../escape")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: run id '../escape': use letters, digits, '.', '_' and '-' (at most 128)"
    ]
    assert echo_server.request_count == 0
    assert not (project / ".loopengt" / "escape.jsonl").exists()


THREE_AT_ONCE = """
    name: three-at-once
    goal: Research three things at once, then sum up.
    agents:
      - {name: worker, instructions: You work.}
    steps:
      - {name: a, prompt: "research alpha"}
      - {name: b, prompt: "research beta"}
      - {name: c, prompt: "research gamma"}
      - {name: total, prompt: "sum up {{a}} {{b}} {{c}}", depends_on: [a, b, c]}
"""


def test_a_failed_parallel_step_resumes_alone_keeping_its_siblings_work(tmp_path: Path) -> None:
    # issue 19: `beta` is refused (400, not retried) the first time; its siblings answer
    broken = [True]

    def answer(request: dict[str, object]) -> Reply:
        prompt = last_user_text(request)
        if "beta" in prompt and broken[0]:
            return ErrorReply(400, "beta is not allowed today")
        return echo_responder(request)

    with ScriptedOpenAIServer([], responder=answer) as server:
        project = make_project(tmp_path, server.base_url)
        write_spec(project, "three.yaml", THREE_AT_ONCE)
        failed = loopengt(project, "run", "three.yaml", "--run-id", "p1")
        assert failed.returncode == 1, failed.stderr
        assert "step 'b' failed" in failed.stdout
        first = sorted(last_user_text(r) for r in server.requests)
        assert first == ["research alpha", "research beta", "research gamma"]

        broken[0] = False
        resumed = loopengt(project, "resume", "p1", "--json")
        assert resumed.returncode == 0, resumed.stderr
        again = [last_user_text(r) for r in server.requests[3:]]

    # alpha and gamma were not asked again: only beta, then the step after the three
    assert again == ["research beta", "sum up echo: research alpha echo: research beta "
                     "echo: research gamma"]  # fmt: skip
    result = result_json(resumed)
    assert result["status"] == "completed"
    assert result["outputs"]["a"] == "echo: research alpha"
    _, state = stored_run(project, "p1")
    assert state["visits"] == {"a": 1, "b": 1, "c": 1, "total": 1}
    assert state["usage"]["model_calls"] == 4


BROKEN_TOOL_SERVER = """
    name: late-tools
    goal: Plan, then look things up.
    tools:
      - {name: lookup, kind: mcp, command: no-such-mcp-server-xyz}
    agents:
      - {name: planner, instructions: You plan.}
      - {name: researcher, instructions: You look things up., tools: [lookup]}
    steps:
      - {name: plan, agent: planner, prompt: "plan"}
      - {name: research, agent: researcher, prompt: "look up {{plan}}", depends_on: [plan]}
"""


def test_a_tool_server_that_cannot_start_is_exit_2_before_any_model_call(
    tmp_path: Path, echo_server: ScriptedOpenAIServer
) -> None:
    # issue 19: found at run start, not after `plan` paid for its model call
    project = make_project(tmp_path, echo_server.base_url)
    write_spec(project, "late.yaml", BROKEN_TOOL_SERVER)
    result = loopengt(project, "run", "late.yaml", "--run-id", "t1")
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [
        "error: tool 'lookup': MCP server no-such-mcp-server-xyz did not start: "
        "command not found: no-such-mcp-server-xyz"
    ]
    assert "resume" not in result.stderr and "Traceback" not in result.stderr
    assert echo_server.request_count == 0
    assert run_list(project) == []  # no run to resume: it never started


SLOW_ANSWER = """
    name: slow-answer
    goal: Answer.
    agents:
      - {name: worker, instructions: You work.}
    steps:
      - {name: s1, prompt: "step one"}
      - {name: s2, prompt: "step two", depends_on: [s1]}
    policy: {max_total_time_seconds: 2, step_timeout_seconds: 60}
"""


def test_the_run_time_limit_cancels_the_call_in_flight(tmp_path: Path) -> None:
    # issue 12: a 2 s limit with a 12 s reply stopped after 12 s; the call in flight gets a
    # deadline of min(step time left, run time left)
    import time

    with ScriptedOpenAIServer(["one", Delayed("too late", 12)]) as server:
        project = make_project(tmp_path, server.base_url)
        write_spec(project, "slow.yaml", SLOW_ANSWER)
        began = time.monotonic()
        result = loopengt(project, "run", "slow.yaml", "--json")
        took = time.monotonic() - began
    assert result.returncode == 1, result.stderr
    data = result_json(result)
    assert data["status"] == "stopped"
    assert data["stop_reason"] == "max_total_time: the run took longer than 2s"
    assert data["outputs"] == {"s1": "one"}
    assert took < 8, took  # the CLI's start-up plus the 2 s, not the 12 s reply
    assert server.request_count == 2  # stopped, not retried


def test_the_run_time_limit_bounds_a_call_on_the_sync_path(tmp_path: Path) -> None:
    import time

    from loopengt.compile import compile_spec
    from loopengt.spec import load_spec_text
    from tests.integration.clients import chat_model

    with ScriptedOpenAIServer(["one", Delayed("too late", 12)]) as server:
        graph = compile_spec(load_spec_text(SLOW_ANSWER), models=chat_model(server))
        began = time.monotonic()
        state = graph.invoke({"input": {}})
        took = time.monotonic() - began
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_total_time: the run took longer than 2s"
    assert 1.5 < took < 4, took


RETRYING = TWO_STEPS.replace("attempts: 2", "attempts: 3")


def test_ctrl_c_during_a_retry_resumes_the_step_with_its_retries(tmp_path: Path) -> None:
    # issue 11: the index said interrupted, the trace `stop: error`, and resume ended
    # `stopped` without retrying. s2's first attempt fails (500), its second hangs: Ctrl-C
    replies: list[Reply] = ["one", ErrorReply(500), Delayed("never delivered", 30)]
    with ScriptedOpenAIServer(replies) as server:
        project = make_project(tmp_path, server.base_url)
        write_spec(project, "retrying.yaml", RETRYING)
        proc = start_loopengt(project, "run", "retrying.yaml", "--run-id", "rc")
        try:
            wait_until(lambda: server.request_count >= 3, what="s2's second attempt")
        finally:
            proc.send_signal(signal.SIGINT)
        _, stderr = finish(proc, timeout=20)
        assert proc.returncode == 130, stderr
        # the three views agree
        assert stored_run(project, "rc")[0].status == "interrupted"
        assert run_list(project)[0]["status"] == "interrupted"
        trace = json.loads(loopengt(project, "trace", "rc", "--format", "json").stdout)
        assert trace["status"] == "interrupted"

        # s2 fails once more on resume: its retries still apply, then it answers
        server.add_replies(ErrorReply(503), "two, at last")
        resumed = loopengt(project, "resume", "rc", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert server.request_count == 5  # s1 was not asked again
    result = result_json(resumed)
    assert result["status"] == "completed"
    assert result["outputs"] == {"s1": "one", "s2": "two, at last"}
    trace = json.loads(loopengt(project, "trace", "rc", "--format", "json").stdout)
    assert trace["status"] == "completed"
    retries = [e for e in trace["events"] if e["kind"] == "retry"]
    assert [e["session"] for e in retries] == [1, 2], retries
