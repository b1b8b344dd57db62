"""Issue 5, Done-when: `loopengt run` killed with SIGKILL during step 3 of 5 resumes with
`loopengt resume`; every step ran once and steps 1-2 were not sent to the model again.

The scripted server runs as its own process and writes its request count to a file, so the
test knows when the third request is in flight (its reply is delayed) and kills then.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.runs.helpers import (
    finish,
    loopengt,
    make_project,
    read_count,
    result_json,
    run_list,
    server_process,
    show,
    start_loopengt,
    stored_run,
    trace_events,
    wait_until,
    write_spec,
)
from tests.support.openai_server import ScriptedOpenAIServer, echo_responder

FIVE_STEPS = """
    name: five-steps
    goal: Do five things in order.
    agents:
      - {name: worker, instructions: You do one thing at a time.}
    steps:
      - {name: s1, prompt: "step one"}
      - {name: s2, prompt: "step two after {{s1}}", depends_on: [s1]}
      - {name: s3, prompt: "step three after {{s2}}", depends_on: [s2]}
      - {name: s4, prompt: "step four", depends_on: [s3]}
      - {name: s5, prompt: "step five", depends_on: [s4]}
"""

# requests 1-2 answer steps 1-2; request 3 (step 3) hangs long enough to be killed in; the
# echo responder answers everything after, so a repeated step would show up in the count
SCRIPT = {
    "replies": ["first done", "second done", {"delay": 30, "text": "never delivered"}],
    "responder": "echo",
}


def test_sigkill_during_step_three_then_resume_repeats_nothing(tmp_path: Path) -> None:
    with server_process(SCRIPT, tmp_path) as (url, count_file):
        project = make_project(tmp_path / "project", url)
        spec = write_spec(project, "five.yaml", FIVE_STEPS)
        proc = start_loopengt(project, "run", spec, "--run-id", "k1")
        try:
            wait_until(lambda: read_count(count_file) >= 3, what="the step-3 request")
        finally:
            proc.send_signal(signal.SIGKILL)
            finish(proc)
        assert proc.returncode == -signal.SIGKILL
        assert read_count(count_file) == 3

        # the killed run: indexed as interrupted, partial state and trace on disk
        listed = {r["run_id"]: r for r in run_list(project)}
        assert listed["k1"]["status"] == "interrupted"
        record, state = stored_run(project, "k1")
        assert record.status == "interrupted"
        assert state["outputs"] == {"s1": "first done", "s2": "second done"}
        jsonl = project / ".loopengt" / "runs" / "k1.jsonl"
        assert jsonl.is_file()
        killed_session = trace_events(project, "k1")
        assert {"run_start"} <= {e["kind"] for e in killed_session}
        assert "run_end" not in {e["kind"] for e in killed_session}

        resumed = loopengt(project, "resume", "k1", "--json")
        assert resumed.returncode == 0, resumed.stderr
        result = result_json(resumed)
        assert result["status"] == "completed"
        # 5 requests for 5 steps plus the one step-3 request the kill cut off
        assert read_count(count_file) == 6
        # an ended run has nothing left to resume
        again = loopengt(project, "resume", "k1")
        assert again.returncode == 2
        assert again.stderr.strip().splitlines() == [
            "error: run 'k1' already ended (completed); nothing to resume"
        ]
        assert read_count(count_file) == 6

    # requests 4, 5, 6 were steps 3, 4, 5 (echoes of their prompts), not steps 1-2 again
    assert result["outputs"] == {
        "s1": "first done",
        "s2": "second done",
        "s3": "echo: step three after second done",
        "s4": "echo: step four",
        "s5": "echo: step five",
    }
    final = show(project, "k1")
    assert final["status"] == "completed"
    assert final["steps_done"] == 5
    state = final["state"]
    assert state["visits"] == {f"s{i}": 1 for i in range(1, 6)}  # each step ran exactly once
    assert state["turns"] == 5
    assert state["usage"]["model_calls"] == 5

    # the trace holds both sessions; each step's model call appears once
    events = trace_events(project, "k1")
    assert [e["session"] for e in events if e["kind"] == "run_start"] == [1, 2]
    calls = [e["step"] for e in events if e["kind"] == "model_call"]
    assert sorted(calls) == ["s1", "s2", "s3", "s4", "s5"]
    trace = json.loads((project / ".loopengt" / "runs" / "k1.json").read_text())
    assert trace["run_id"] == "k1"
    assert trace["status"] == "completed"


def test_each_step_is_on_disk_before_the_next_one_calls_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python API, made deterministic: with checkpoint writes slowed down, LangGraph's default
    # ("async" durability) lets step 3 call its model before step 2's checkpoint is saved,
    # and a kill -9 at that moment would repeat step 2. The engine must save first.
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from loopengt.runs.engine import start_run

    real_put = SqliteSaver.put

    def slow_put(self: SqliteSaver, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(SqliteSaver, "put", slow_put)
    saved_at_request: dict[int, list[str]] = {}

    def on_request(number: int) -> None:  # what a kill -9 at this request would leave
        conn = sqlite3.connect(tmp_path / ".loopengt" / "loopengt.db")
        try:
            saved = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": "d1"}})
        finally:
            conn.close()
        values = saved.checkpoint["channel_values"] if saved else {}
        saved_at_request[number] = sorted(values.get("outputs") or {})

    with ScriptedOpenAIServer(responder=echo_responder, on_request=on_request) as server:
        make_project(tmp_path, server.base_url)
        write_spec(tmp_path, "five.yaml", FIVE_STEPS)
        monkeypatch.chdir(tmp_path)  # the model comes from ./.loopengt/config.toml
        result = start_run("five.yaml", run_id="d1")
    assert result.status == "completed"
    assert saved_at_request == {
        1: [],
        2: ["s1"],
        3: ["s1", "s2"],
        4: ["s1", "s2", "s3"],
        5: ["s1", "s2", "s3", "s4"],
    }
