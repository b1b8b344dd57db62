"""Approvals through the CLI: `run` stops at `waiting_approval` (exit 0) and says how to
answer; `approve` continues to completion, `reject` ends the run as rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runs.helpers import (
    error_lines,
    loopengt,
    make_project,
    result_json,
    stored_run,
    write_spec,
)
from tests.support.openai_server import ScriptedOpenAIServer

APPROVAL_SPEC = """
    name: release-notes
    goal: Write release notes and publish them once a person agrees.
    agents:
      - {name: writer, instructions: You write release notes.}
    steps:
      - {name: draft, prompt: "draft the notes"}
      - {name: publish, prompt: "publish {{draft}}", depends_on: [draft]}
    policy:
      approvals: [{step: publish, message: "Publish the release notes?"}]
"""


@pytest.fixture
def project(tmp_path: Path, echo_server: ScriptedOpenAIServer) -> Path:
    root = make_project(tmp_path, echo_server.base_url)
    write_spec(root, "release.yaml", APPROVAL_SPEC)
    return root


def test_run_waits_resume_refuses_approve_completes(
    project: Path, echo_server: ScriptedOpenAIServer
) -> None:
    proc = loopengt(project, "run", "release.yaml", "--run-id", "r1")
    assert proc.returncode == 0, proc.stderr
    assert "run r1  waiting_approval" in proc.stdout
    assert "draft: echo: draft the notes" in proc.stdout
    # how to answer, with the spec's message
    assert "waiting for approval: Publish the release notes?" in proc.stderr
    assert "loopengt approve r1" in proc.stderr
    assert "loopengt reject r1" in proc.stderr
    assert echo_server.request_count == 1  # publish has not called its model yet
    record, state = stored_run(project, "r1")
    assert (record.status, record.ended_at) == ("waiting_approval", None)
    assert state["outputs"] == {"draft": "echo: draft the notes"}

    # resume is the wrong command for a waiting run: it says which ones to use
    resumed = loopengt(project, "resume", "r1")
    assert resumed.returncode == 2
    assert resumed.stderr.strip().splitlines() == [
        "error: run 'r1' is waiting for approval: `loopengt approve r1` or `loopengt reject r1`"
    ]
    assert stored_run(project, "r1")[0].status == "waiting_approval"  # untouched

    approved = loopengt(project, "approve", "r1", "--comment", "ok", "--json")
    assert approved.returncode == 0, approved.stderr
    result = result_json(approved)
    assert result["status"] == "completed"
    assert result["pending_approval"] is None
    assert result["outputs"] == {
        "draft": "echo: draft the notes",
        "publish": "echo: publish echo: draft the notes",
    }
    assert echo_server.request_count == 2  # draft was not run again
    record, state = stored_run(project, "r1")
    assert record.status == "completed"
    assert state["visits"] == {"draft": 1, "publish": 1}

    # approving a run that is not waiting is bad input, in one line
    again = loopengt(project, "approve", "r1", "--comment", "ok")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "error: run 'r1' is not waiting for approval (status: completed)"
    ]


def test_reject_ends_the_run_rejected(project: Path, echo_server: ScriptedOpenAIServer) -> None:
    proc = loopengt(project, "run", "release.yaml", "--run-id", "r2", "--json")
    assert proc.returncode == 0, proc.stderr
    result = result_json(proc)
    assert result["status"] == "waiting_approval"
    assert result["pending_approval"] == {
        "type": "approval",
        "step": "publish",
        "message": "Publish the release notes?",
    }

    rejected = loopengt(project, "reject", "r2", "--comment", "not yet")
    assert rejected.returncode == 1, rejected.stderr
    assert "run r2  rejected" in rejected.stdout
    assert "stop reason: rejected: step 'publish' was not approved (not yet)" in rejected.stdout
    assert error_lines(rejected.stderr) == []
    assert echo_server.request_count == 1  # the rejected step never called its model
    record, state = stored_run(project, "r2")
    assert record.status == "rejected"
    assert record.ended_at is not None
    assert state["outputs"] == {"draft": "echo: draft the notes"}

    # an ended run cannot be answered again
    again = loopengt(project, "approve", "r2")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "error: run 'r2' is not waiting for approval (status: rejected)"
    ]


PARALLEL_APPROVALS = """
    name: two-gates
    goal: Two independent steps that each need a yes.
    agents:
      - {name: writer, instructions: You write.}
    steps:
      - {name: left, prompt: "left"}
      - {name: right, prompt: "right"}
      - {name: merge, prompt: "merge {{left}} {{right}}", depends_on: [left, right]}
    policy:
      approvals: [left, right]
"""


def test_parallel_approvals_are_answered_one_at_a_time(
    project: Path, echo_server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python API: two steps wait at once, and LangGraph needs to be told which one an
    # answer is for; each `approve` answers the approval the previous result showed
    from loopengt.runs.engine import answer_approval, start_run

    monkeypatch.chdir(project)  # the model comes from ./.loopengt/config.toml
    write_spec(project, "two-gates.yaml", PARALLEL_APPROVALS)
    first = start_run("two-gates.yaml", run_id="g1")
    assert (first.status, first.pending and first.pending["step"]) == ("waiting_approval", "left")
    second = answer_approval("g1", approved=True)
    assert (second.status, second.pending and second.pending["step"]) == (
        "waiting_approval",
        "right",
    )
    assert second.outputs == {"left": "echo: left"}
    done = answer_approval("g1", approved=True, comment="fine")
    assert done.status == "completed"
    assert done.outputs == {
        "left": "echo: left",
        "right": "echo: right",
        "merge": "echo: merge echo: left echo: right",
    }
    assert echo_server.request_count == 3
