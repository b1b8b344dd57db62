"""Evals: metrics read exactly from a known trace, the judge through the real ChatOpenAI
client against a scripted OpenAI-compatible server (scores, reasons, malformed replies, a
server that is down), datasets run concurrently with their expectations, and the baseline
regression gate."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loopengt.errors import UserInputError
from loopengt.evals.metrics import run_metrics
from loopengt.evals.run_eval import eval_run
from loopengt.evals.suite import run_dataset
from loopengt.runs.engine import RunOptions, list_runs, start_run
from loopengt.tracing.events import summarize
from tests.runs.helpers import loopengt, make_project
from tests.support.browser import render
from tests.support.openai_server import JsonReply, ScriptedOpenAIServer, last_user_text

SPEC = """\
name: haiku
goal: Write a haiku about the subject.
inputs:
  subject: {description: What the haiku is about.}
agents:
  - name: poet
steps:
  - name: write
    prompt: "Write a haiku about {{input.subject}}."
rubric:
  - It has three lines.
policy: {max_turns: 3}
"""


def project(root: Path, base_url: str = "http://127.0.0.1:9/v1") -> Path:
    make_project(root, base_url)
    (root / "loop.yaml").write_text(SPEC)
    return root


# -- metrics ---------------------------------------------------------------------------------


def ev(ts: float, kind: str, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, "kind": kind, "run_id": "r", "session": 1, **fields}


def test_metrics_are_exact_on_a_known_trace() -> None:
    events = [
        ev(0.0, "run_start", spec="s", input={}),
        ev(1.0, "step_start", step="a", step_id="a1", agent="x"),
        ev(
            1.5,
            "model_call",
            step="a",
            step_id="a1",
            input_tokens=10,
            output_tokens=5,
            cost_usd=0.01,
        ),
        ev(1.6, "tool_call", step="a", step_id="a1", name="search", args={}, result="ok"),
        ev(1.7, "tool_call", step="a", step_id="a1", name="fetch", args={}, error="404"),
        ev(1.8, "tool_call", step="a", step_id="a1", name="search", args={}, result="ok"),
        ev(2.0, "step_end", step="a", step_id="a1", status="ok"),
        ev(2.0, "step_start", step="b", step_id="b1", agent="y"),
        ev(
            2.4,
            "model_call",
            step="b",
            step_id="b1",
            input_tokens=20,
            output_tokens=7,
            cost_usd=0.02,
        ),
        ev(2.5, "gate", step="b", step_id="b1", passed=False, reason="no"),
        ev(3.0, "step_end", step="b", step_id="b1", status="failed"),
        ev(3.0, "retry", step="b", step_id="b2", cause="gate", attempt=2),
        ev(3.0, "step_start", step="b", step_id="b2", agent="y"),
        ev(
            3.5,
            "model_call",
            step="b",
            step_id="b2",
            input_tokens=21,
            output_tokens=8,
            cost_usd=0.02,
        ),
        ev(3.6, "gate", step="b", step_id="b2", passed=True, reason=""),
        ev(4.5, "step_end", step="b", step_id="b2", status="ok"),
        ev(5.0, "run_end", status="completed", stop_reason=None, outputs={"a": 1, "b": 2}),
    ]
    metrics = run_metrics(summarize(events), ["a", "b", "c"])
    assert metrics.status == "completed" and metrics.stop_reason is None
    assert (metrics.steps_total, metrics.steps_completed, metrics.turns) == (3, 2, 3)
    assert metrics.latency_s == 5.0
    assert metrics.step_latency_s == {"a": 1.0, "b": 2.5}
    assert (metrics.input_tokens, metrics.output_tokens) == (51, 20)
    assert metrics.cost_usd == pytest.approx(0.05)
    assert metrics.model_calls == 3
    assert (metrics.gates, metrics.gates_passed, metrics.gate_pass_rate) == (2, 1, 0.5)
    assert metrics.retries == 1
    assert (metrics.tool_calls, metrics.tool_errors) == (3, 1)
    assert metrics.tools_used == ["search", "fetch"]


# -- one run, judged ---------------------------------------------------------------------------


def finished_run(root: Path) -> str:
    result = start_run(
        root / "loop.yaml", inputs={"subject": "owls"}, options=RunOptions(model="test"), root=root
    )
    assert result.status == "completed"
    return result.run_id


def test_the_judge_scores_each_criterion_with_reasons(tmp_path: Path) -> None:
    replies = [
        JsonReply({"reasoning": "It is about owls, as asked.", "score": 0.9}),
        JsonReply({"reasoning": "Only one line.", "score": 0.2}),
    ]
    with ScriptedOpenAIServer(replies) as server:
        root = project(tmp_path, server.base_url)
        run_id = finished_run(root)
        result = loopengt(root, "eval", run_id, "--judge-model", "openai:test-model", "--json")
        requests = server.requests
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_key = {j["key"]: j for j in data["judgements"]}
    assert set(by_key) == {"goal", "it_has_three_lines"}
    scores = sorted(j["score"] for j in data["judgements"])
    assert scores == [0.2, 0.9] and data["score"] == pytest.approx(0.55)
    assert {j["comment"] for j in data["judgements"]} == {
        "It is about owls, as asked.",
        "Only one line.",
    }
    assert data["metrics"]["steps_completed"] == 1 and data["judge_error"] is None
    # the judge saw the criterion, the run's input and its output, and answered as JSON
    asked = [json.dumps(r["messages"]) for r in requests]
    assert any("Criterion: It has three lines." in text for text in asked)
    assert all("owls" in text and "test reply to" in text for text in asked)
    assert requests[0]["response_format"]["type"] == "json_schema"
    # kept with the run: `runs` shows the score
    [record] = list_runs(root=root)
    assert record.score == pytest.approx(0.55)
    table = loopengt(root, "runs")
    assert "score" in table.stdout and "0.55" in table.stdout


def test_a_malformed_judge_reply_is_a_judge_failure_not_a_crash(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(responder=lambda request: "I think it is fine!") as server:
        root = project(tmp_path, server.base_url)
        run_id = finished_run(root)
        result = loopengt(root, "eval", run_id, "--judge-model", "openai:test-model")
    assert result.returncode == 0, result.stderr
    assert "judge failed:" in result.stderr and "no valid structured output" in result.stderr
    assert "Traceback" not in result.stderr
    assert "1/1 completed" in result.stdout  # the metrics are still reported


def test_a_judge_that_is_down_is_reported_and_the_metrics_kept(tmp_path: Path) -> None:
    root = project(tmp_path)  # the config's server does not exist
    run_id = finished_run(root)
    result = eval_run(run_id, judge_model="openai:test-model", root=root)
    assert result.judge_error is not None and "cannot reach the server" in result.judge_error
    assert result.score is None and result.metrics.completed


def test_eval_bad_input_is_exit_2(tmp_path: Path) -> None:
    root = project(tmp_path)
    run_id = finished_run(root)
    for args, message in [
        (["nope"], "no run 'nope'"),
        ([run_id, "--rubric", "missing.txt"], "--rubric missing.txt"),
        ([run_id, "--judge-model", "bogus:x"], "unknown model provider 'bogus'"),
        ([], "give a RUN_ID, or --dataset"),
    ]:
        result = loopengt(root, "eval", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr


# -- datasets ----------------------------------------------------------------------------------


def write_dataset(root: Path, cases: list[dict[str, Any]], **top: Any) -> Path:
    path = root / "cases.yaml"
    path.write_text(json.dumps({"spec": "loop.yaml", **top, "cases": cases}))
    return path


def ten_cases() -> list[dict[str, Any]]:
    return [
        {
            "id": f"case-{i}",
            "inputs": {"subject": f"topic {i}"},
            "expect": {"output": {"contains": "test reply", "regex": "haiku"}},
        }
        for i in range(10)
    ]


def test_a_dataset_of_ten_cases_at_concurrency_four(tmp_path: Path) -> None:
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow_echo(request: dict[str, Any]) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.15)
        with lock:
            in_flight[0] -= 1
        return "A haiku about " + last_user_text(request)[-20:]

    with ScriptedOpenAIServer(responder=slow_echo) as server:
        root = project(tmp_path, server.base_url)
        cases = ten_cases()
        for case in cases:
            case["expect"] = {"output": {"contains": "haiku", "regex": r"topic \d"}}
        dataset = write_dataset(root, cases)
        done: list[str] = []
        report = run_dataset(dataset, concurrency=4, root=root, on_case=lambda c: done.append(c.id))
        requests = server.request_count
    assert requests == 10 and peak[0] == 4  # four at a time, never more
    assert sorted(done) == sorted(c["id"] for c in cases)
    assert not report.failed and report.summary()["passed"] == 10
    assert len({c.run_id for c in report.cases}) == 10
    assert {r.run_id for r in list_runs(root=root)} == {c.run_id for c in report.cases}


def test_dataset_cli_reports_and_gates_on_a_baseline(tmp_path: Path) -> None:
    root = project(tmp_path)
    write_dataset(root, ten_cases())
    run = ["eval", "--dataset", "cases.yaml", "--model", "test", "--report", "out/report.json"]
    first = loopengt(root, *run, "--save-baseline", "baseline.json")
    assert first.returncode == 0, first.stderr
    assert "10/10 passed" in first.stdout and "baseline saved" in first.stderr
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["summary"]["passed"] == 10
    assert "| case-3 | pass |" in (root / "out" / "report.md").read_text()

    same = loopengt(root, *run, "--baseline", "baseline.json")
    assert same.returncode == 0, same.stderr
    assert "no regressions" in same.stdout

    cases = ten_cases()  # inject a regression: case-7's expected output no longer matches
    cases[7]["expect"]["output"]["contains"] = "a sonnet"
    write_dataset(root, cases)
    gated = loopengt(root, *run, "--baseline", "baseline.json")
    assert gated.returncode == 1
    assert "1 regression(s)" in gated.stderr
    assert "case-7: passed before, fails now: output write contains 'a sonnet'" in gated.stderr
    assert "case-6" not in gated.stderr
    dom, console = render(root / "out" / "report.html")  # the page, in headless Chromium
    assert console == [] and 'data-ready="1"' in dom
    assert "<li><b>case-7</b>: passed before, fails now" in dom
    chart = dom.split('aria-label="chart"')[1].split("</svg>")[0]
    assert all(f">case-{i}</text>" in chart for i in range(10))

    refused = loopengt(root, *run, "--save-baseline", "new.json")
    assert refused.returncode == 1 and "not saving a baseline" in refused.stderr
    assert not (root / "new.json").exists()


def test_a_dataset_replays_from_cassettes_without_a_model(tmp_path: Path) -> None:
    root = project(tmp_path)
    write_dataset(root, ten_cases()[:3])
    recorded = loopengt(root, "eval", "-d", "cases.yaml", "-m", "test", "--record-dir", "tapes")
    assert recorded.returncode == 0, recorded.stderr
    assert sorted(p.name for p in (root / "tapes").iterdir()) == [
        "case-0.yaml",
        "case-1.yaml",
        "case-2.yaml",
    ]
    replayed = loopengt(root, "eval", "-d", "cases.yaml", "--replay-dir", "tapes", "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["summary"]["passed"] == 3
    (root / "tapes" / "case-1.yaml").unlink()
    missing = loopengt(root, "eval", "-d", "cases.yaml", "--replay-dir", "tapes")
    assert missing.returncode == 2
    assert "case 'case-1': no cassette tapes/case-1.yaml" in missing.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: []\n", "cases.yaml:1:8: cases: List should have at least 1 item"),
        (
            "spec: loop.yaml\ncases:\n  - id: a\n    expec: {}\n",
            "cases.yaml:4:5: cases[0].expec: unknown field",
        ),
        (
            "spec: loop.yaml\ncases:\n  - id: a\n    inputs: {subjet: x}\n",
            "case 'a': unknown input 'subjet'",
        ),
        (
            "spec: loop.yaml\ncases:\n  - {id: a, inputs: {subject: x}}\n  - {id: a}\n",
            "cases[1].id: duplicate case id",
        ),
        (
            "spec: loop.yaml\ncases:\n  - id: a\n    expect: {output: {regex: '('}}\n",
            "not a regular expression",
        ),
    ],
)
def test_bad_datasets_are_exit_2_with_their_place(tmp_path: Path, text: str, message: str) -> None:
    root = project(tmp_path)
    (root / "cases.yaml").write_text(textwrap.dedent(text))
    result = loopengt(root, "eval", "--dataset", "cases.yaml", "-m", "test")
    assert result.returncode == 2, result.stdout
    assert message in result.stderr, result.stderr
    assert not list_runs(root=root)


def test_bad_baselines_are_exit_2_before_anything_runs(tmp_path: Path) -> None:
    root = project(tmp_path)
    write_dataset(root, ten_cases()[:1])
    (root / "broken.json").write_text("{not json")
    for baseline, message in [("none.json", "no such file"), ("broken.json", "not JSON")]:
        result = loopengt(root, "eval", "-d", "cases.yaml", "-m", "test", "--baseline", baseline)
        assert result.returncode == 2 and message in result.stderr
    assert not list_runs(root=root)


# -- evaluators in openevals' shape ------------------------------------------------------------

EVALUATORS = """
import asyncio
import os


def length(*, inputs, outputs, reference_outputs=None):
    return {"key": "short", "score": len(str(outputs)) < 500, "comment": "length checked"}


async def both(*, inputs, outputs, reference_outputs=None):
    await asyncio.sleep(0)
    return [{"key": "a", "score": 0.5, "comment": ""}, {"key": "b", "score": 1.0}]


def broken(*, inputs, outputs, reference_outputs=None):
    raise RuntimeError("evaluator exploded")


def openevals_judge():
    from langchain_openai import ChatOpenAI
    from openevals.llm import create_llm_as_judge

    model = ChatOpenAI(base_url=os.environ["JUDGE_URL"], api_key="x", model="judge")
    return create_llm_as_judge(
        prompt="Is this a haiku about {inputs}? {outputs}", judge=model, feedback_key="haiku"
    )


haiku = None
if os.environ.get("JUDGE_URL"):
    haiku = openevals_judge()
"""


def test_evaluators_in_openevals_shape_join_the_judgements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path)
    (root / "case_evals.py").write_text(EVALUATORS)
    monkeypatch.syspath_prepend(str(root))
    cases = ten_cases()[:2]
    dataset = write_dataset(root, cases, evaluators=["case_evals:length", "case_evals:both"])
    report = run_dataset(dataset, model="test", root=root)
    assert not report.failed
    keys = {j.key: j.score for j in report.cases[0].judgements}
    assert keys == {"short": True, "a": 0.5, "b": 1.0}
    assert report.cases[0].score == round(2.5 / 3, 4)

    write_dataset(root, cases, evaluators=["case_evals:broken"])
    failing = run_dataset(dataset, model="test", root=root)
    assert len(failing.failed) == 2
    assert failing.cases[0].judge_error == (
        "evaluator broken failed: RuntimeError: evaluator exploded"
    )

    write_dataset(root, cases, evaluators=["case_evals:nope"])
    with pytest.raises(UserInputError, match="evaluator 'case_evals:nope' cannot be imported"):
        run_dataset(dataset, model="test", root=root)


def test_an_openevals_llm_judge_plugs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openevals")
    reply = JsonReply({"reasoning": "Three lines, about owls.", "score": True})
    with ScriptedOpenAIServer(responder=lambda request: reply) as server:
        monkeypatch.setenv("JUDGE_URL", server.base_url)
        root = project(tmp_path)
        (root / "openevals_case.py").write_text(EVALUATORS)
        monkeypatch.syspath_prepend(str(root))
        dataset = write_dataset(root, ten_cases()[:2], evaluators=["openevals_case:haiku"])
        report = run_dataset(dataset, model="test", root=root)
        asked = json.dumps(server.requests[0]["messages"])
    assert not report.failed
    assert [j.as_dict() for j in report.cases[0].judgements] == [
        {"key": "haiku", "score": True, "comment": "Three lines, about owls."}
    ]
    assert "Is this a haiku about" in asked and "topic" in asked
