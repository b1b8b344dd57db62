"""Issue 19, model faults: runs through the CLI against a model server that fails on purpose
(`tests.support.fault_server`): 429, 500, 503, replies slower than the step timeout,
connections reset mid-response or mid-stream, cut-off JSON for structured output.

A fault the policy can absorb is retried (or repaired, for structured output) and the run
completes with the outputs an unfaulted run makes. A fault that persists ends the run with
exit 1 and one precise reason naming what happened; the outputs of the steps that finished
are kept (`runs show`, the trace); no Python traceback reaches the user.

`loopengt run` streams the model's text when stderr is a terminal; ``TTY_COMPATIBLE=1``
makes rich (and so the CLI) take it for one, so the streamed path is driven too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runs.helpers import cli_env, make_project
from tests.support.fault_server import FaultServer, Json, step_tag, structured_schema

CLI_TIMEOUT = 120
STEP_TIMEOUT = 1  # seconds: policy.step_timeout_seconds of every spec here
SLOW = 3.0  # seconds a "slow" reply takes: past the step timeout
ATTEMPTS = 3
POLICY = f"""
policy:
  max_turns: 20
  step_timeout_seconds: {STEP_TIMEOUT}
  retry: {{attempts: {ATTEMPTS}, backoff_seconds: 0.05}}
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
URL = r"http://127\.0\.0\.1:\d+/v1"

SEQUENTIAL = """
name: three-steps
goal: Do three things in order.
agents:
  - {name: worker, instructions: You do one thing at a time.}
steps:
  - {name: s1, prompt: "[[s1]] one"}
  - {name: s2, prompt: "[[s2]] two after {{s1}}", depends_on: [s1]}
  - {name: s3, prompt: "[[s3]] three after {{s2}}", depends_on: [s2]}
"""
SEQUENTIAL_OUTPUTS = {
    "s1": "echo: [[s1]] one",
    "s2": "echo: [[s2]] two after echo: [[s1]] one",
    "s3": "echo: [[s3]] three after echo: [[s2]] two after echo: [[s1]] one",
}

# the critic's structured verdict: it fails the first draft and passes the revised one
EVALUATOR = """
name: judged
goal: Write a line that passes review.
pattern: evaluator_optimizer
agents:
  - {name: writer, instructions: You write.}
  - {name: critic, instructions: You judge.}
steps:
  - {name: draft, agent: writer, prompt: "[[draft]] write a line {{feedback}}"}
  - {name: review, agent: critic, depends_on: [draft], prompt: "[[review]] judge {{draft}}"}
evaluator: {generator: draft, evaluator: review, max_iterations: 3}
"""
FEEDBACK = "revise please"

# the supervisor routes with structured output: each worker once, then FINISH
SUPERVISOR = """
name: team
goal: Answer with a researched paragraph.
pattern: supervisor_worker
agents:
  - {name: lead, instructions: "[[lead]] You plan and delegate."}
  - {name: researcher, description: gathers facts}
  - {name: writer, description: writes}
steps:
  - {name: research, agent: researcher, prompt: "[[research]] facts for {{task}}"}
  - {name: write, agent: writer, prompt: "[[write]] write from {{research}}"}
supervisor: {agent: lead, workers: [researcher, writer], max_turns: 6}
"""

FAN_OUT = """
name: fan
goal: Review three ways, then summarise.
pattern: parallel_fan_out
agents:
  - {name: reviewer, instructions: You review one thing.}
  - {name: lead, instructions: You summarise.}
steps:
  - {name: b1, agent: reviewer, prompt: "[[b1]] style"}
  - {name: b2, agent: reviewer, prompt: "[[b2]] tests"}
  - {name: b3, agent: reviewer, prompt: "[[b3]] docs"}
  - {name: summary, agent: lead, prompt: "[[summary]] {{b1}} / {{b2}} / {{b3}}"}
fan_out: {branches: [b1, b2, b3], aggregator: summary}
"""


def responder(request: Json) -> Any:
    """Echo for text; a verdict (pass once revised) or the first routing choice."""
    schema = structured_schema(request)
    users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    if schema is None:
        return "echo: " + str(users[-1].get("content") if users else "")[:200]
    props = schema.get("properties") or {}
    if "pass" in props:
        revised = FEEDBACK in json.dumps(request.get("messages"))
        feedback = "good" if revised else FEEDBACK
        return {"pass": revised, "score": 1.0 if revised else 0.2, "feedback": feedback}
    return {"next": props["next"]["enum"][0], "task": "do your part"}


# -- running the CLI ---------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def shown(self) -> str:
        return self.stdout + self.stderr


def project_for(root: Path, server: FaultServer, spec: str, attempts: int = ATTEMPTS) -> Path:
    project = make_project(root, server.base_url)
    policy = POLICY.replace(f"attempts: {ATTEMPTS}", f"attempts: {attempts}")
    (project / "spec.yaml").write_text(textwrap.dedent(spec) + policy, encoding="utf-8")
    return project


def cli(project: Path, *args: str, tty: bool = False) -> Outcome:
    env = cli_env()
    if tty:  # rich takes stderr for a terminal: live progress, streamed model text
        env["TTY_COMPATIBLE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    out, err = ANSI.sub("", done.stdout), ANSI.sub("", done.stderr)
    assert "Traceback" not in out + err, f"a traceback reached the user:\n{out}\n{err}"
    return Outcome(done.returncode, out, err)


def show(project: Path, run_id: str) -> dict[str, Any]:
    shown = cli(project, "runs", "show", run_id, "--json")
    assert shown.code == 0, shown.stderr
    record: dict[str, Any] = json.loads(shown.stdout.strip().splitlines()[-1])
    return record


def trace(project: Path, run_id: str) -> dict[str, Any]:
    traced = cli(project, "trace", run_id, "--format", "json")
    assert traced.code == 0, traced.stderr
    data: dict[str, Any] = json.loads(traced.stdout)
    return data


def events(trace_data: dict[str, Any], kind: str, step: str | None = None) -> list[Json]:
    return [
        e
        for e in trace_data["events"]
        if e.get("kind") == kind and (step is None or e.get("step") == step)
    ]


def fault_on(step: str, kind: str, times: int) -> Callable[[int, Json], str | None]:
    """A plan: the first ``times`` requests of ``step`` get ``kind``, nothing else does."""
    hits: Counter[str] = Counter()

    def plan(number: int, request: Json) -> str | None:
        if step_tag(request) != step or hits[step] >= times:
            return None
        hits[step] += 1
        return kind

    return plan


# -- one fault, once: retried (or repaired), and the run completes ----------------------------

# what the progress line for the retry says (`↻ s2 (worker)  attempt 2 (error: ...)`)
RETRY_SAYS = {
    "429": "Error code: 429 - Rate limit reached for test-model",
    "500": "Error code: 500 - The server had an error while processing your request",
    "503": "Error code: 503 - The engine is currently overloaded",
    "slow": f"no answer within the step timeout of {STEP_TIMEOUT}s",
    "drop": "Connection error",
}


# streamed as well where it changes what happens: a timeout cancels a stream in the middle,
# a reset cuts one; an HTTP error comes before any stream
FAULTS = [
    pytest.param(kind, tty, id=f"{kind}-{'streamed' if tty else 'plain'}")
    for kind in ("429", "500", "503", "slow", "drop")
    for tty in (False, True)
    if not tty or kind in ("slow", "drop")
]


@pytest.mark.parametrize(("kind", "tty"), FAULTS)
def test_a_fault_once_is_retried_and_the_run_completes(
    tmp_path: Path, kind: str, tty: bool
) -> None:
    with FaultServer(responder, plan=fault_on("s2", kind, 1), slow_seconds=SLOW) as server:
        project = project_for(tmp_path, server, SEQUENTIAL)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1", tty=tty)
        served = server.served
    assert run.code == 0, run.shown
    assert {s.stream for s in served} == {tty}  # the path under test was the one taken
    assert [(s.step, s.fault) for s in served] == [
        ("s1", None),
        ("s2", kind),
        ("s2", None),
        ("s3", None),
    ]
    # what the user sees: the retry with its cause, then the run's outputs, whole
    assert "↻ s2 (worker)  attempt 2 (error: " in run.stderr
    retry_line = next(line for line in run.stderr.splitlines() if "↻ s2" in line)
    assert RETRY_SAYS[kind] in retry_line
    assert "run r1  completed" in run.stdout
    assert f"s3: {SEQUENTIAL_OUTPUTS['s3']}" in run.stdout.splitlines()
    traced = trace(project, "r1")
    assert traced["status"] == "completed"
    assert traced["outputs"] == SEQUENTIAL_OUTPUTS  # not a cut-off reply
    assert traced["usage"]["model_calls"] == 3  # the faulted call made nothing to count
    retries = events(traced, "retry", "s2")
    assert [(e["attempt"], e["cause"]) for e in retries] == [(2, "error")]
    assert RETRY_SAYS[kind] in retries[0]["reason"]


def test_a_stream_cut_short_without_an_error_is_not_taken_for_the_reply(tmp_path: Path) -> None:
    # the stream of s2 ends early but cleanly (a body delimited by the connection's close):
    # no finish_reason, no [DONE]. Half a reply must not become the step's output.
    plan = fault_on("s2", "truncate", 1)
    with FaultServer(responder, plan=plan, kinds=["truncate"], slow_seconds=SLOW) as server:
        project = project_for(tmp_path, server, SEQUENTIAL)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1", tty=True)
        served = server.served
    assert [(s.step, s.fault, s.stream) for s in served][:2] == [
        ("s1", None, True),
        ("s2", "truncate", True),
    ]
    record = show(project, "r1")
    outputs = record["state"]["outputs"]
    if run.code == 0:  # the cut reply was detected and asked again
        assert outputs == SEQUENTIAL_OUTPUTS, f"a cut-off reply was taken as whole: {outputs}"
    else:  # or the run stopped saying why, keeping s1
        assert record["status"] == "failed"
        assert outputs == {"s1": SEQUENTIAL_OUTPUTS["s1"]}


# -- one fault, every time: the run stops with a precise reason --------------------------------

REASONS = {
    "429": (
        "failed",
        rf"openai: rate limited at {URL} \(429\) after the policy's retries; retry later, "
        r"raise policy\.retry, or lower fan_out\.max_concurrency",
    ),
    "500": (
        "failed",
        rf"openai: server error 500 at {URL} after the policy's retries: The server had an "
        r"error while processing your request; the server is failing — retry later with "
        r"`loopengt resume RUN_ID`",
    ),
    "503": (
        "failed",
        rf"openai: server error 503 at {URL} after the policy's retries: The engine is "
        r"currently overloaded, please try again later; the server is failing — retry later",
    ),
    "slow": ("stopped", rf"no answer within the step timeout of {STEP_TIMEOUT}s"),
    "drop": (
        "failed",
        rf"openai: the server at {URL} closed the connection before the reply was complete "
        r"\(Connection reset by peer\) after the policy's retries",
    ),
}


@pytest.mark.parametrize(("kind", "tty"), FAULTS)
def test_a_fault_every_time_stops_the_run_with_a_precise_reason(
    tmp_path: Path, kind: str, tty: bool
) -> None:
    with FaultServer(responder, plan=fault_on("s2", kind, 99), slow_seconds=SLOW) as server:
        project = project_for(tmp_path, server, SEQUENTIAL)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1", tty=tty)
        served = server.served
    status, reason = REASONS[kind]
    assert run.code == 1, run.shown
    # s2 was tried the policy's number of times, s3 never
    assert [(s.step, s.fault) for s in served] == [("s1", None)] + [("s2", kind)] * ATTEMPTS
    # what the user sees: the status, the one-line reason, the output s1 made
    assert f"run r1  {status}" in run.stdout
    full = rf"error: step 's2' failed after {ATTEMPTS} attempt\(s\): {reason}"
    stop_line = next(line for line in run.stdout.splitlines() if line.startswith("stop reason:"))
    assert re.match(rf"stop reason: {full}", stop_line), stop_line
    assert f"s1: {SEQUENTIAL_OUTPUTS['s1']}" in run.stdout
    if status == "failed":
        assert "retry the failed step: loopengt resume r1" in run.stderr
    record = show(project, "r1")
    assert record["status"] == status
    assert re.match(full, record["stop_reason"])
    assert record["state"]["outputs"] == {"s1": SEQUENTIAL_OUTPUTS["s1"]}
    traced = trace(project, "r1")
    assert traced["status"] == status
    assert traced["outputs"] == {"s1": SEQUENTIAL_OUTPUTS["s1"]}
    assert [e["attempt"] for e in events(traced, "retry", "s2")] == list(range(2, ATTEMPTS + 1))
    if kind == "slow":  # the timeout cut each attempt short: no waiting for the slow replies
        ends = events(traced, "step_end", "s2")
        assert [e["status"] for e in ends] == ["failed"] * (ATTEMPTS - 1) + ["timed_out"]
        assert all(STEP_TIMEOUT <= e["duration_s"] < SLOW - 0.5 for e in ends), ends


def test_resume_after_the_server_recovers_repeats_only_the_failed_step(tmp_path: Path) -> None:
    failing = {"on": True}

    def plan(number: int, request: Json) -> str | None:
        return "503" if failing["on"] and step_tag(request) == "s2" else None

    with FaultServer(responder, plan=plan, slow_seconds=SLOW) as server:
        project = project_for(tmp_path, server, SEQUENTIAL)
        first = cli(project, "run", "spec.yaml", "--run-id", "r1")
        assert first.code == 1
        failing["on"] = False
        resumed = cli(project, "resume", "r1")
        steps = [(s.step, s.fault) for s in server.served]
    assert resumed.code == 0, resumed.shown
    assert steps == [("s1", None), *[("s2", "503")] * ATTEMPTS, ("s2", None), ("s3", None)]
    record = show(project, "r1")
    assert record["status"] == "completed"
    assert record["state"]["outputs"] == SEQUENTIAL_OUTPUTS


# -- structured output: cut-off JSON is repaired, or fails the step saying so ------------------


@pytest.mark.parametrize("tty", [False, True], ids=["plain", "streamed"])
def test_malformed_verdict_json_is_repaired(tmp_path: Path, tty: bool) -> None:
    with FaultServer(responder, plan=fault_on("review", "malformed", 1)) as server:
        project = project_for(tmp_path, server, EVALUATOR)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1", tty=tty)
        served = server.served
    assert run.code == 0, run.shown
    assert {s.stream for s in served} == {tty}
    # the broken verdict, its repair, then the second round (revised draft, passing verdict)
    assert [(s.step, s.fault) for s in served] == [
        ("draft", None),
        ("review", "malformed"),
        ("review", None),
        ("draft", None),
        ("review", None),
    ]
    repair = server.requests[2]["messages"]
    assert repair[-2]["content"].startswith('{"pass": true')  # the model sees its reply
    assert repair[-1]["content"].startswith("That reply was invalid: not JSON: ")
    record = show(project, "r1")
    assert record["status"] == "completed"
    outputs = record["state"]["outputs"]
    assert outputs["review"] == {"pass": True, "score": 1.0, "feedback": "good"}
    assert FEEDBACK in outputs["draft"]
    assert record["state"]["visits"] == {"draft": 2, "review": 2}
    traced = trace(project, "r1")
    calls = events(traced, "model_call", "review")
    assert len(calls) == 3 and calls[0]["response"].startswith('{"pass": true, "next"')


@pytest.mark.parametrize("tty", [False, True], ids=["plain", "streamed"])
def test_malformed_verdict_json_every_time_fails_the_step_with_the_raw_reply(
    tmp_path: Path, tty: bool
) -> None:
    with FaultServer(responder, plan=fault_on("review", "malformed", 99)) as server:
        project = project_for(tmp_path, server, EVALUATOR)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1", tty=tty)
        served = server.served
    assert run.code == 1, run.shown
    assert {s.stream for s in served} == {tty}
    # three tries at the JSON (the first and two repairs), no policy retry of the step:
    # the same model asked the same way would break the same way
    assert [(s.step, s.fault) for s in served] == [("draft", None)] + [("review", "malformed")] * 3
    reason = (
        "error: step 'review': no valid structured output (not JSON: Unterminated string "
        "starting at); raw reply: "
        '\'{"pass": true, "next": "FINISH", "feedback": "cut off mid-str\''
    )
    assert "run r1  failed" in run.stdout
    assert f"stop reason: {reason}" in run.stdout.splitlines()
    record = show(project, "r1")
    assert (record["status"], record["stop_reason"]) == ("failed", reason)
    assert record["state"]["outputs"] == {"draft": "echo: [[draft]] write a line "}
    traced = trace(project, "r1")
    assert traced["outputs"] == {"draft": "echo: [[draft]] write a line "}


def test_malformed_routing_json_fails_the_supervisor_with_the_raw_reply(tmp_path: Path) -> None:
    with FaultServer(responder, plan=fault_on("lead", "malformed", 99)) as server:
        project = project_for(tmp_path, server, SUPERVISOR)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1")
        served = server.served
    assert run.code == 1, run.shown
    assert [(s.step, s.fault) for s in served] == [("lead", "malformed")] * 3
    reason = (
        "error: supervisor routing: no valid structured output (not JSON: Unterminated string "
        "starting at); raw reply: "
        '\'{"pass": true, "next": "FINISH", "feedback": "cut off mid-str\''
    )
    assert f"stop reason: {reason}" in run.stdout.splitlines()
    assert "retry the failed step: loopengt resume r1" in run.stderr
    record = show(project, "r1")
    assert (record["status"], record["stop_reason"]) == ("failed", reason)
    assert record["state"]["outputs"] == {}


def test_malformed_routing_json_once_is_repaired(tmp_path: Path) -> None:
    with FaultServer(responder, plan=fault_on("lead", "malformed", 1)) as server:
        project = project_for(tmp_path, server, SUPERVISOR)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1")
        served = server.served
    assert run.code == 0, run.shown
    # routing: broken, repaired -> researcher; -> writer; -> FINISH
    assert [(s.step, s.fault) for s in served] == [
        ("lead", "malformed"),
        ("lead", None),
        ("research", None),
        ("lead", None),
        ("write", None),
        ("lead", None),
    ]
    traced = trace(project, "r1")
    assert traced["status"] == "completed"
    assert sorted(traced["outputs"]) == ["research", "write"]


def test_a_failing_branch_keeps_the_others_and_resume_runs_only_it(tmp_path: Path) -> None:
    failing = {"on": True}

    def plan(number: int, request: Json) -> str | None:
        return "503" if failing["on"] and step_tag(request) == "b2" else None

    with FaultServer(responder, plan=plan) as server:
        project = project_for(tmp_path, server, FAN_OUT)
        run = cli(project, "run", "spec.yaml", "--run-id", "r1")
        first = Counter(s.step for s in server.served)
        assert run.code == 1, run.shown
        assert first == {"b1": 1, "b2": ATTEMPTS, "b3": 1}  # no summary without b2
        stop_line = next(x for x in run.stdout.splitlines() if x.startswith("stop reason:"))
        assert stop_line.startswith(
            f"stop reason: error: step 'b2' failed after {ATTEMPTS} attempt(s): openai: "
            "server error 503 at http://127.0.0.1:"
        )
        kept = {"b1": "echo: [[b1]] style", "b3": "echo: [[b3]] docs"}
        assert show(project, "r1")["state"]["outputs"] == kept
        assert trace(project, "r1")["outputs"] == kept
        failing["on"] = False
        resumed = cli(project, "resume", "r1")
        again = Counter(s.step for s in server.served) - first
    assert resumed.code == 0, resumed.shown
    assert again == {"b2": 1, "summary": 1}  # the branches that finished are not asked again
    outputs = show(project, "r1")["state"]["outputs"]
    assert outputs["summary"] == (
        "echo: [[summary]] echo: [[b1]] style / echo: [[b2]] tests / echo: [[b3]] docs"
    )


# -- a seeded 30 % of everything, across patterns ---------------------------------------------

PATTERNS = {
    "sequential": SEQUENTIAL,
    "parallel_fan_out": FAN_OUT,
    "evaluator_optimizer": EVALUATOR,
    "supervisor_worker": SUPERVISOR,
}
# the precise reasons a faulted run may stop with, by the fault its failing step got last
AFTER = r"failed after \d attempt\(s\): "
FINAL_REASONS = {
    "429": re.compile(rf"{AFTER}openai: rate limited at {URL} \(429\)"),
    "500": re.compile(rf"{AFTER}openai: server error 500 at {URL} after the policy's retries"),
    "503": re.compile(rf"{AFTER}openai: server error 503 at {URL} after the policy's retries"),
    "slow": re.compile(rf"{AFTER}no answer within the step timeout of {STEP_TIMEOUT}s"),
    "drop": re.compile(
        rf"{AFTER}openai: the server at {URL} closed the connection before the reply was complete"
    ),
    "malformed": re.compile(r": no valid structured output \(not JSON: "),
}
# two attempts a step: a fault twice in a row (9 %) stops the run, so both ends are seen
SOAK_ATTEMPTS = 2
SEEDS = (19, 20)


def reference_outputs(root: Path, spec: str) -> dict[str, Any]:
    """What the spec makes against the same model with no faults (in process: fast)."""
    from loopengt.runs.engine import start_run

    with FaultServer(responder, rate=0.0) as server:
        project = project_for(root, server, spec, SOAK_ATTEMPTS)
        result = start_run(project / "spec.yaml", run_id="ref", root=project)
    assert result.status == "completed", result.stop_reason
    return dict(result.outputs)


@pytest.mark.slow
def test_seeded_faults_on_thirty_percent_of_requests_across_patterns(tmp_path: Path) -> None:
    began = time.monotonic()
    faults: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    report: list[str] = []
    for name, spec in PATTERNS.items():
        expected = reference_outputs(tmp_path / f"ref-{name}", spec)
        for base in SEEDS:
            for tty in (False, True):
                seed = base + 100 * tty  # a fault's fate follows its prompt: vary the seed
                where = tmp_path / f"{name}-{seed}-{'tty' if tty else 'plain'}"
                label = f"{name}, seed {seed}, {'streamed' if tty else 'plain'}"
                with FaultServer(responder, seed=seed, rate=0.3, slow_seconds=SLOW) as server:
                    project = project_for(where, server, spec, SOAK_ATTEMPTS)
                    run = cli(project, "run", "spec.yaml", "--run-id", "r1", tty=tty)
                    served = server.served
                    record = show(project, "r1")
                    traced = trace(project, "r1")
                    faults.update(s.fault or "ok" for s in served)
                    outputs = record["state"]["outputs"]
                    assert traced["outputs"] == outputs, label
                    got = dict(Counter(x.fault for x in served if x.fault))
                    report.append(f"  {label}: exit {run.code}, faults {got}")
                    if run.code == 0:
                        ended["completed"] += 1
                        assert record["status"] == "completed", label
                        assert outputs == expected, f"{label}: {outputs}"
                        continue
                    ended[record["status"]] += 1
                    report[-1] += f": {record['stop_reason']}"
                    assert run.code == 1, f"{label}: exit {run.code}\n{run.shown}"
                    assert record["status"] in ("failed", "stopped"), label
                    reason = record["stop_reason"]
                    assert f"stop reason: {reason}" in run.stdout.splitlines(), label
                    # the reason names the fault the failing step got last
                    errors = record["state"].get("errors") or []
                    failing = next(e["step"] for e in errors if e["error"] in reason)
                    last = [s.fault for s in served if s.step == failing][-1]
                    assert last is not None and FINAL_REASONS[last].search(reason), (
                        f"{label}: last fault {last!r}, reason {reason!r}"
                    )
                    # what finished is kept, whole: replies the server sent for that step
                    for step, output in outputs.items():
                        sent = server.replies_of(step)
                        if not isinstance(output, str):  # a verdict: compare the values
                            sent = [json.loads(text) for text in sent]
                        assert output in sent, f"{label}: {step} kept {output!r}, sent {sent}"
    wall = time.monotonic() - began
    total = sum(faults.values())
    faulted = total - faults["ok"]
    print(
        f"\nmodel faults: {total} requests, {faulted} faulted {dict(faults)}; "
        f"runs {dict(ended)}; {wall:.1f}s\n" + "\n".join(report)
    )
    assert 0.2 < faulted / total < 0.45  # ~30 %: a few dozen draws
    assert set(faults) >= {"ok", "429", "500", "503", "slow", "drop", "malformed"}
    # both ends were reached, so both sets of checks ran
    assert ended["completed"] and ended["failed"] + ended["stopped"], dict(ended)
