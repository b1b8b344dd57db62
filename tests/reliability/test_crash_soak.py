"""Issue 19, crash anywhere, lose nothing: `loopengt run` (a real subprocess) is killed with
SIGKILL at 30 seeded random moments across four 6-step specs (sequential with a parallel
diamond, parallel_fan_out with branches and a map, evaluator_optimizer's loop, a custom graph
with a back-edge), and resumed with `loopengt resume` (which may be killed again). A
moment is drawn from a seeded RNG: a time after the process started, a while after its k-th
model request, or as soon as it has taken the run (its index row names its pid); the first
kill of each spec is of that last kind, in `loopengt run`, before its first checkpoint.

How a repeated model call is told from a legitimate one: the model server is deterministic
and its reply to a request names the request (``R`` + a hash of its messages), so

* the same prompt sent twice is the same call made twice (a fresh run makes every call
  once: the reference run, uninterrupted, checks that premise);
* right after each kill, the run's last checkpoint and its pending writes are read from
  SQLite: every reply named in them is *durable*. A durable call must never reach the server
  again. A call that was in flight (sent, its result not yet written) may be repeated.

After each run: it completed; its outputs, visits and model-call count equal the
uninterrupted reference run's (every step output present exactly once); the server saw
exactly the reference's calls; `loopengt trace RUN --format json` works and holds every
durable reply.

Problems are collected over the whole soak and reported together, so one failure does not
hide the others. ``SOAK_SEED`` changes the seed (default 19).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.runs.helpers import cli_env, loopengt, make_project, write_spec
from tests.support.openai_server import Delayed, JsonReply, Reply, ScriptedOpenAIServer

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("SOAK_SEED", "19"))
KILLS = 30
SESSION_TIMEOUT = 60.0  # a session that takes longer is a hang: a problem, then killed
TOKEN = re.compile(r"R([0-9a-f]{12})")
TAG = re.compile(r"\[\[(\w+)\]\]")

SEQUENTIAL = """
    name: soak-sequential
    goal: Do six things in order.
    agents:
      - {name: worker, instructions: You do one thing at a time.}
    steps:
      - {name: s1, prompt: "[[s1]] start"}
      - {name: s2, prompt: "[[s2]] after {{s1}}", depends_on: [s1]}
      - {name: s3, prompt: "[[s3]] also after {{s1}}", depends_on: [s1]}
      - {name: s4, prompt: "[[s4]] join {{s2}} and {{s3}}", depends_on: [s2, s3]}
      - {name: s5, prompt: "[[s5]] after {{s4}}", depends_on: [s4]}
      - {name: s6, prompt: "[[s6]] end {{s5}}", depends_on: [s5]}
"""

FAN_OUT = """
    name: soak-fan-out
    goal: Review in parallel, then summarise.
    pattern: parallel_fan_out
    inputs:
      files: {description: Files to review.}
    agents:
      - {name: reviewer, instructions: You review one thing.}
      - {name: lead, instructions: You summarise.}
    steps:
      - {name: b1, agent: reviewer, prompt: "[[b1]] style"}
      - {name: b2, agent: reviewer, prompt: "[[b2]] tests"}
      - {name: b3, agent: reviewer, prompt: "[[b3]] docs"}
      - {name: review, agent: reviewer, prompt: "[[review]] file {{item}}"}
      - {name: summary, agent: lead, prompt: "[[summary]] {{b1}} {{b2}} {{b3}} {{review}}"}
      - {name: final, agent: lead, depends_on: [summary], prompt: "[[final]] {{summary}}"}
    fan_out:
      branches: [b1, b2, b3]
      map_step: review
      map_over: input.files
      aggregator: summary
    policy:
      max_turns: 30
"""

# the critic passes the third round: 1 + 3 x (draft, polish, review) + 2 calls
EVALUATOR = """
    name: soak-evaluator
    goal: Write a note that passes review.
    pattern: evaluator_optimizer
    agents:
      - {name: writer, instructions: You write.}
      - {name: critic, instructions: You judge.}
    steps:
      - {name: outline, agent: writer, prompt: "[[outline]] plan it"}
      - name: draft
        agent: writer
        depends_on: [outline]
        prompt: "[[draft]] {{outline}} {{feedback}}"
      - {name: polish, agent: writer, depends_on: [draft], prompt: "[[polish]] {{draft}}"}
      - name: review
        agent: critic
        depends_on: [polish]
        prompt: "[[review]] {{polish}} prior: {{feedback}}"
      - {name: publish, agent: writer, depends_on: [review], prompt: "[[publish]] {{polish}}"}
      - {name: notes, agent: writer, depends_on: [publish], prompt: "[[notes]] {{publish}}"}
    evaluator: {generator: draft, evaluator: review, max_iterations: 4}
    policy:
      max_turns: 30
"""

# the checker approves the second draft: the back-edge check -> draft is taken once
CUSTOM = """
    name: soak-custom
    goal: Draft until the checker approves, then finish.
    pattern: custom
    agents:
      - {name: writer, instructions: You write.}
      - {name: checker, instructions: You check.}
    steps:
      - {name: plan, agent: writer, prompt: "[[plan]] plan"}
      - {name: draft, agent: writer, prompt: "[[draft]] {{plan}} fixes: {{check}}"}
      - {name: check, agent: checker, prompt: "[[check]] {{draft}}"}
      - {name: edit, agent: writer, prompt: "[[edit]] {{draft}}"}
      - {name: final, agent: writer, prompt: "[[final]] {{edit}}"}
      - {name: notes, agent: writer, prompt: "[[notes]] {{final}}"}
    graph:
      entry: plan
      edges:
        - {from: plan, to: draft}
        - {from: draft, to: check}
        - from: check
          branches:
            - when: {output_contains: APPROVED}
              to: edit
            - when: {counter: visits.draft, op: "<", value: 4}
              to: draft
          default: END
        - {from: edit, to: final}
        - {from: final, to: notes}
        - {from: notes, to: END}
    policy:
      max_turns: 30
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    spec: str
    kills: int
    inputs: tuple[str, ...] = ()
    visits: dict[str, int] = field(default_factory=dict)  # expected at the end


SCENARIOS = [
    Scenario("sequential", SEQUENTIAL, 8, visits={f"s{i}": 1 for i in range(1, 7)}),
    Scenario(
        "parallel_fan_out",
        FAN_OUT,
        7,
        inputs=("--input", 'files=["a.py", "b.py", "c.py"]'),
        # the map step is visited once per item
        visits={"b1": 1, "b2": 1, "b3": 1, "review": 3, "summary": 1, "final": 1},
    ),
    Scenario(
        "evaluator_optimizer",
        EVALUATOR,
        8,
        visits={"outline": 1, "draft": 3, "polish": 3, "review": 3, "publish": 1, "notes": 1},
    ),
    Scenario(
        "custom",
        CUSTOM,
        7,
        visits={"plan": 1, "draft": 2, "check": 2, "edit": 1, "final": 1, "notes": 1},
    ),
]
assert sum(s.kills for s in SCENARIOS) == KILLS


# -- the model: deterministic replies that name their request ---------------------------------


def call_key(request: dict[str, Any]) -> str:
    """The identity of a model call: its messages (the same state sends the same ones)."""
    messages = json.dumps(request.get("messages"), sort_keys=True)
    return hashlib.sha256(messages.encode()).hexdigest()[:12]


def step_tag(request: dict[str, Any]) -> str:
    for message in request.get("messages") or []:
        found = TAG.search(str(message.get("content") or ""))
        if found:
            return found.group(1)
    return "?"


class SoakModel:
    """Replies ``R<key>`` (plus the loop markers the specs route on) after a seeded delay."""

    def __init__(self, seed: int, delayed: bool = True) -> None:
        self.seed = seed
        self.delayed = delayed

    def __call__(self, request: dict[str, Any]) -> Reply:
        key = call_key(request)
        text = " ".join(str(m.get("content") or "") for m in request.get("messages") or [])
        reply: Reply
        if request.get("response_format"):  # the evaluator's verdict: pass in round 3
            rounds = 1 + max((int(n) for n in re.findall(r"round-(\d+)", text)), default=0)
            verdict = {
                "pass": rounds >= 3,
                "score": rounds / 3,
                "feedback": f"R{key} round-{rounds}",
            }
            reply = JsonReply(verdict)
        else:  # the custom checker approves its second look; others carry the marker on
            tries = max((int(n) for n in re.findall(r"retry-(\d+)", text)), default=0)
            if step_tag(request) == "check":
                tries += 1
                reply = f"R{key} retry-{tries}" + (" APPROVED" if tries >= 2 else "")
            else:
                reply = f"R{key}" + (f" retry-{tries}" if tries else "")
        if not self.delayed:
            return reply
        rng = random.Random(f"{self.seed}:{key}")
        return Delayed(reply, rng.uniform(0.05, 0.35))


def calls(server: ScriptedOpenAIServer) -> list[dict[str, Any]]:
    """The model calls the server saw. A client killed after sending its headers leaves a
    request with an empty body, which the scripted server logs as ``{}``: not a call, the
    model never saw a prompt."""
    return [r for r in server.requests if r.get("messages")]


# -- what a kill leaves ------------------------------------------------------------------------


def db_path(project: Path) -> Path:
    return project / ".loopengt" / "loopengt.db"


def durable_keys(project: Path, run_id: str) -> set[str]:
    """The calls whose replies are in the run's last checkpoint or its pending writes."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    if not db_path(project).exists():
        return set()
    conn = sqlite3.connect(db_path(project))
    try:
        saved = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": run_id}})
    finally:
        conn.close()
    if saved is None:
        return set()
    text = repr(saved.checkpoint.get("channel_values")) + repr(saved.pending_writes)
    return set(TOKEN.findall(text))


def index_row(project: Path, run_id: str) -> tuple[str, int] | None:
    """(status, pid) of the run's index row, as stored."""
    if not db_path(project).exists():
        return None
    conn = sqlite3.connect(db_path(project), timeout=5)
    try:
        row = conn.execute(
            "SELECT status, pid FROM loopengt_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the run did not get as far as creating it
            return None
        raise
    finally:
        conn.close()
    return None if row is None else (str(row[0]), int(row[1] or 0))


class SoakServer(ScriptedOpenAIServer):
    """A server with the project it serves (for the `claimed` moment's index look-up)."""

    project: Path

    def start(self) -> SoakServer:
        super().start()
        # a client killed while it connects resets the socket: expected here, not news
        assert self._httpd is not None
        self._httpd.handle_error = lambda *args: None  # type: ignore[method-assign]
        return self

    def __enter__(self) -> SoakServer:
        return self.start()


# -- the moments -------------------------------------------------------------------------------

Moment = tuple[Any, ...]


def draw_moment(rng: random.Random) -> Moment:
    """When to kill a session: as soon as it has taken the run (its index row names it),
    a time after its start (start-up, compile, the first calls), or a while after its
    k-th model request reached the server (in a call, between a reply and its
    checkpoint, in a parallel superstep)."""
    roll = rng.random()
    if roll < 0.15:
        return ("claimed",)
    if roll < 0.40:
        return ("after", round(rng.uniform(0.0, 2.5), 3))
    return ("request", rng.randint(1, 4), round(rng.uniform(0.0, 0.45), 3))


@dataclass
class Session:
    command: str
    moment: Moment | None
    killed: bool = False
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


def start(project: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    # output to files: a pipe nobody reads while we wait could fill up and stall the run
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "loopengt", *args],
            cwd=project,
            env=cli_env(),
            stdout=out,
            stderr=err,
        )


def reached(
    moment: Moment,
    proc: subprocess.Popen[bytes],
    began: float,
    base: int,
    server: SoakServer,
    run_id: str,
) -> bool:
    kind = moment[0]
    if kind == "after":
        return time.monotonic() - began >= float(moment[1])
    if kind == "claimed":
        row = index_row(server.project, run_id)
        return row is not None and row == ("running", proc.pid)
    return server.request_count >= base + int(moment[1])


def run_session(
    project: Path, server: SoakServer, run_id: str, args: list[str], moment: Moment | None
) -> Session:
    session = Session(args[0], moment)
    base = server.request_count
    log = project / f"session-{len(list(project.glob('session-*.err')))}"
    proc = start(project, log, *args)
    began = time.monotonic()
    try:
        if moment is not None:
            while proc.poll() is None and not reached(moment, proc, began, base, server, run_id):
                if time.monotonic() - began > SESSION_TIMEOUT:
                    break
                time.sleep(0.002)
            if proc.poll() is None and moment[0] == "request":
                time.sleep(moment[2])
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                session.killed = True
        proc.wait(timeout=SESSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if session.killed and proc.returncode != -signal.SIGKILL:
        session.killed = False  # it ended on its own between the check and the signal
    session.returncode = proc.returncode
    session.stdout = log.with_suffix(".out").read_text(errors="replace")
    session.stderr = log.with_suffix(".err").read_text(errors="replace")
    return session


# -- one run, killed and resumed until it completes --------------------------------------------


@dataclass
class Kill:
    run_id: str
    moment: Moment
    command: str
    durable: set[str]
    counts: Counter[str]


@dataclass
class Reference:
    outputs: dict[str, Any]
    visits: dict[str, int]
    model_calls: int
    keys: set[str]


@dataclass
class Tally:
    kills: int = 0
    sessions: int = 0
    resumes: int = 0
    runs: int = 0
    requests: int = 0
    in_flight_repeats: int = 0
    durable_repeats: int = 0
    durable_checked: int = 0
    late_kills: int = 0  # the kill landed after the run had completed (process exiting)
    cut_requests: int = 0  # requests whose body a kill cut off (not calls)
    moments: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def reference(root: Path, scenario: Scenario) -> Reference:
    """The spec run once without kills or delays, in process: what every run must end with."""
    from loopengt.cli.run import parse_inputs
    from loopengt.runs.engine import get_run, start_run

    inputs = parse_inputs([scenario.inputs[1]] if scenario.inputs else [], None)
    with ScriptedOpenAIServer(responder=SoakModel(SEED, delayed=False)) as server:
        project = make_project(root / f"ref-{scenario.name}", server.base_url)
        spec = write_spec(project, "spec.yaml", scenario.spec)
        result = start_run(project / spec, inputs=inputs, run_id="ref", root=project)
        assert result.status == "completed", (scenario.name, result.stop_reason)
        keys = [call_key(r) for r in calls(server)]
    _, state = get_run("ref", root=project)
    assert len(keys) == len(set(keys)), f"{scenario.name}: two calls share a prompt"
    assert state["visits"] == scenario.visits, state["visits"]
    assert sorted(state["outputs"]) == sorted(scenario.visits)
    return Reference(dict(state["outputs"]), dict(state["visits"]), len(keys), set(keys))


def soak_run(
    root: Path,
    scenario: Scenario,
    ref: Reference,
    rng: random.Random,
    quota: int,
    tally: Tally,
    *,
    first: bool = False,
) -> int:
    """One run of ``scenario`` killed up to ``quota`` times; the kills made. The ``first``
    run of a scenario is killed first as soon as `loopengt run` has indexed it, before its
    first checkpoint (a window too narrow for random times to hit reliably)."""
    tally.runs += 1
    run_id = f"{scenario.name.replace('_', '-')}-{tally.runs}"
    kills: list[Kill] = []
    with SoakServer(responder=SoakModel(SEED)) as server:
        project = make_project(root / run_id, server.base_url)
        server.project = project
        write_spec(project, "spec.yaml", scenario.spec)
        command = ["run", "spec.yaml", "--run-id", run_id, *scenario.inputs, "--json"]
        while True:
            moment = draw_moment(rng) if len(kills) < quota else None
            if first and not kills and command[0] == "run":
                moment = ("claimed",)
            session = run_session(project, server, run_id, command, moment)
            tally.sessions += 1
            tally.resumes += command[0] == "resume"
            if "Traceback" in session.stderr:
                tally.problems.append(f"{run_id}: a traceback escaped:\n{session.stderr[-3000:]}")
            if session.killed:
                assert moment is not None
                counts = Counter(call_key(r) for r in calls(server))
                kills.append(
                    Kill(run_id, moment, command[0], durable_keys(project, run_id), counts)
                )
                tally.kills += 1
                tally.moments[moment[0]] += 1
                row = index_row(project, run_id)
                if row is None:  # killed before the run was indexed: start it again
                    continue
                listed = _listed_status(project, run_id)
                if listed == "completed":  # killed while exiting after the run ended
                    tally.late_kills += 1
                    break
                if listed != "interrupted":
                    tally.problems.append(
                        f"{run_id}: killed ({moment}) but `runs` says {listed!r}, not interrupted"
                    )
                command = ["resume", run_id, "--json"]
                continue
            if session.returncode != 0:
                tally.problems.append(
                    f"{run_id}: `loopengt {command[0]}` after {len(kills)} kill(s) (moments: "
                    f"{[k.moment for k in kills]}) exited {session.returncode}:\n"
                    f"{session.stderr[-1500:]}"
                )
                return len(kills)
            break
        final_counts = Counter(call_key(r) for r in calls(server))
        tally.requests += sum(final_counts.values())
        tally.cut_requests += len(server.requests) - len(calls(server))
        sent = {call_key(r): r for r in calls(server)}
        _check_run(project, run_id, ref, kills, final_counts, sent, tally)
    return len(kills)


def _listed_status(project: Path, run_id: str) -> str | None:
    from loopengt.runs.engine import list_runs

    found = [r.status for r in list_runs(root=project) if r.run_id == run_id]
    return str(found[0]) if found else None


def _check_run(
    project: Path,
    run_id: str,
    ref: Reference,
    kills: list[Kill],
    final_counts: Counter[str],
    sent: dict[str, dict[str, Any]],
    tally: Tally,
) -> None:
    problems = tally.problems
    # no durable call made again; in-flight ones may be
    for kill in kills:
        tally.durable_checked += len(kill.durable)
        for key in sorted(kill.durable):
            again = final_counts[key] - kill.counts[key]
            if again:
                tally.durable_repeats += again
                problems.append(
                    f"{run_id}: call R{key} was checkpointed at the kill ({kill.moment}, in "
                    f"`{kill.command}`) and was sent to the model {again} more time(s)"
                )
    tally.in_flight_repeats += sum(final_counts.values()) - len(final_counts)
    if set(final_counts) != ref.keys:
        extra, missing = set(final_counts) - ref.keys, ref.keys - set(final_counts)
        shown_extra = [(step_tag(sent[k]), sent[k].get("messages")) for k in sorted(extra)]
        problems.append(
            f"{run_id}: the server saw other calls than an uninterrupted run: "
            f"{len(missing)} missing, extra: {json.dumps(shown_extra)[:3000]}; "
            f"kills: {[(k.command, k.moment) for k in kills]}"
        )
    shown = loopengt(project, "runs", "show", run_id, "--json")
    if shown.returncode != 0:
        problems.append(f"{run_id}: `runs show` exited {shown.returncode}: {shown.stderr}")
        return
    record = json.loads(shown.stdout.strip().splitlines()[-1])
    state = record["state"]
    if record["status"] != "completed":
        problems.append(f"{run_id}: status {record['status']!r}: {record.get('stop_reason')}")
    if state.get("outputs") != ref.outputs:
        problems.append(
            f"{run_id}: outputs differ from an uninterrupted run: {state.get('outputs')}"
        )
    if state.get("visits") != ref.visits:
        problems.append(f"{run_id}: visits {state.get('visits')}, expected {ref.visits}")
    made = (state.get("usage") or {}).get("model_calls")
    if made != ref.model_calls:
        problems.append(f"{run_id}: {made} model calls in the state, expected {ref.model_calls}")
    traced = loopengt(project, "trace", run_id, "--format", "json")
    if traced.returncode != 0:
        problems.append(
            f"{run_id}: `trace --format json` exited {traced.returncode}: {traced.stderr}"
        )
        return
    trace = json.loads(traced.stdout)
    if trace.get("status") != "completed" or trace.get("outputs") != ref.outputs:
        problems.append(f"{run_id}: trace says {trace.get('status')!r}, outputs differ")
    responses = " ".join(
        str(e.get("response")) for e in trace["events"] if e.get("kind") == "model_call"
    )
    lost = {k for kill in kills for k in kill.durable} - set(TOKEN.findall(responses))
    if lost:
        problems.append(f"{run_id}: checkpointed calls missing from the trace: {sorted(lost)}")


def test_sigkill_at_thirty_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    tally = Tally()
    for scenario in SCENARIOS:
        ref = reference(tmp_path, scenario)
        left = scenario.kills
        while left > 0:
            assert tally.runs < 3 * KILLS, "runs keep ending before they can be killed"
            first = left == scenario.kills
            left -= soak_run(tmp_path, scenario, ref, rng, left, tally, first=first)
    wall = time.monotonic() - began
    print(
        f"\ncrash soak (seed {SEED}): {tally.kills} kills {dict(tally.moments)}, "
        f"{tally.sessions} sessions ({tally.resumes} resumes), {tally.runs} runs, "
        f"{tally.requests} model requests, {tally.in_flight_repeats} in-flight calls repeated, "
        f"{tally.durable_checked} checkpointed calls checked, "
        f"{tally.durable_repeats} repeated, {tally.late_kills} kills after the end, "
        f"{tally.cut_requests} requests cut off by a kill; {wall:.1f}s"
    )
    assert tally.kills == KILLS
    assert not tally.problems, "\n\n".join(tally.problems)
    assert tally.durable_repeats == 0
