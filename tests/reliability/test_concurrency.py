"""Issue 19, concurrency: many `loopengt` processes on one project's SQLite database.

tests/runs/test_concurrent_runs.py starts 20 runs at once. Here, at the same time as 20 new
runs: 5 `resume`s of runs that failed or were killed (SIGKILL, Ctrl-C) before, and readers
(`runs --json`, `trace --format json`) in a loop. Nothing reports a locked database, every
process exits as it should, and no row is lost. Then several approvals wait at once and are
listed and answered by interrupt id, two processes racing on one of them."""

from __future__ import annotations

import functools
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runs.helpers import (
    finish,
    loopengt,
    make_project,
    run_list,
    start_loopengt,
    wait_until,
    write_spec,
)
from tests.runs.test_approval import APPROVAL_SPEC, PARALLEL_APPROVALS
from tests.support.openai_server import (
    ErrorReply,
    Reply,
    ScriptedOpenAIServer,
    echo_responder,
    last_user_text,
)

NEW_RUNS = 20
READERS = 2
TIMEOUT = 300  # seconds for the whole storm, on two shared cores
LOCKED = re.compile(r"database (table )?is locked|SQLITE_BUSY|OperationalError|deadlock", re.I)

TWO_STEPS = """
    name: storm
    goal: Greet a number, then confirm it.
    inputs:
      n: {description: Which run this is.}
    agents:
      - {name: worker, instructions: You answer briefly.}
    steps:
      - {name: greet, prompt: "hello {{input.n}}"}
      - {name: confirm, prompt: "HOLD confirm {{greet}}", depends_on: [greet]}
    policy: {max_turns: 5, retry: {attempts: 1}}
"""


class Model:
    """An echo model whose `confirm` step (the prompt saying HOLD) fails with a 500, hangs
    until released, or answers, as the test says."""

    def __init__(self) -> None:
        self.hold = "answer"  # "fail" | "hang" | "answer"
        self.release = threading.Event()
        self.server = ScriptedOpenAIServer(responder=self.answer)

    def answer(self, request: dict[str, Any]) -> Reply:
        if "HOLD" in last_user_text(request):
            if self.hold == "fail":
                return ErrorReply(500, "injected failure")
            if self.hold == "hang":
                self.release.wait(120)
        return echo_responder(request)

    def asked(self, text: str) -> bool:
        return any(text in last_user_text(r) for r in self.server.requests)


@pytest.fixture
def model() -> Iterator[Model]:
    m = Model()
    with m.server:
        try:
            yield m
        finally:
            m.release.set()  # a handler still hanging must not hold the server's shutdown


def new_run(i: int) -> tuple[str, ...]:
    return ("--run-id", f"c{i:02d}", "-i", f"n=c{i:02d}")


def outputs(n: str) -> dict[str, str]:
    return {"greet": f"echo: hello {n}", "confirm": f"echo: HOLD confirm echo: hello {n}"}


def prepare_runs_to_resume(project: Path, model: Model) -> dict[str, str]:
    """Three runs whose second step failed, one killed with SIGKILL and one with Ctrl-C
    while their second step waited for the model: run id -> status before resuming."""
    model.hold = "fail"
    failing = {
        f"f{i}": start_loopengt(project, "run", "storm.yaml", "--run-id", f"f{i}", "-i", f"n=f{i}")
        for i in range(3)
    }
    for run_id, proc in failing.items():
        stdout, stderr = finish(proc)
        assert proc.returncode == 1, f"{run_id}: {stdout}{stderr}"
        assert "injected failure" in stdout + stderr

    model.hold = "hang"
    killed = {
        k: start_loopengt(project, "run", "storm.yaml", "--run-id", k, "-i", f"n={k}")
        for k in ("k0", "k1")
    }
    for k in killed:
        asked = f"HOLD confirm echo: hello {k}"
        wait_until(functools.partial(model.asked, asked), what=f"{k}'s second step")
    killed["k0"].send_signal(signal.SIGKILL)
    killed["k1"].send_signal(signal.SIGINT)
    _, stderr = finish(killed["k1"])
    finish(killed["k0"])
    assert killed["k0"].returncode == -signal.SIGKILL
    assert killed["k1"].returncode == 130, stderr

    before = {r["run_id"]: r["status"] for r in run_list(project)}
    assert before == {
        "f0": "failed",
        "f1": "failed",
        "f2": "failed",
        "k0": "interrupted",
        "k1": "interrupted",
    }
    return before


class Readers:
    """`loopengt runs --json` and `loopengt trace RUN --format json`, in a loop on threads,
    each checking what it read."""

    def __init__(self, project: Path, traced: list[str]) -> None:
        self.project, self.traced = project, traced
        self.stop = threading.Event()
        self.calls = 0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(READERS)]

    def __enter__(self) -> Readers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def loop(self, number: int) -> None:
        turn = number
        while not self.stop.is_set():
            run_id = self.traced[turn % len(self.traced)]
            args = ("runs", "--json") if turn % 2 == 0 else ("trace", run_id, "--format", "json")
            turn += 1
            proc = loopengt(self.project, *args, timeout=120)
            problem = self.check(args, proc)
            with self.lock:
                self.calls += 1
                if problem:
                    self.problems.append(problem)

    @staticmethod
    def check(args: tuple[str, ...], proc: subprocess.CompletedProcess[str]) -> str | None:
        where = f"loopengt {' '.join(args)} (exit {proc.returncode}): {proc.stderr[-800:]}"
        if proc.returncode != 0 or LOCKED.search(proc.stderr):
            return where
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            return f"{where} unreadable output: {exc}"
        if args[0] == "trace" and data.get("run_id") != args[1]:
            return f"{where} a trace of {data.get('run_id')!r}"
        if args[0] == "runs" and not isinstance(data, list):
            return f"{where} not a list"
        return None


@pytest.mark.slow
def test_new_runs_resumes_and_readers_share_one_database(tmp_path: Path, model: Model) -> None:
    project = make_project(tmp_path, model.server.base_url)
    write_spec(project, "storm.yaml", TWO_STEPS)
    resumable = prepare_runs_to_resume(project, model)
    model.hold = "answer"
    model.release.set()  # the killed runs' requests may still hang in the server
    asked_before = model.server.request_count

    started = time.monotonic()
    with Readers(project, sorted(resumable)) as readers:
        procs = {
            f"c{i:02d}": start_loopengt(project, "--debug", "run", "storm.yaml", *new_run(i))
            for i in range(NEW_RUNS)
        }
        procs |= {
            run_id: start_loopengt(project, "--debug", "resume", run_id) for run_id in resumable
        }
        finished = {
            run_id: (proc, *finish(proc, timeout=TIMEOUT)) for run_id, proc in procs.items()
        }
        wall = time.monotonic() - started
    lock_errors = sum(len(LOCKED.findall(out + err)) for _, out, err in finished.values()) + sum(
        len(LOCKED.findall(p)) for p in readers.problems
    )
    print(
        f"\nconcurrency: {NEW_RUNS} runs + {len(resumable)} resumes started at once, with "
        f"{READERS} reader loops ({readers.calls} reads): {len(procs) + readers.calls} "
        f"processes, {wall:.1f}s wall, {lock_errors} lock errors"
    )

    for run_id, (proc, stdout, stderr) in finished.items():
        assert not LOCKED.search(stdout + stderr), f"{run_id}: {stderr}"
        assert proc.returncode == 0, f"{run_id}: {stdout}{stderr}"
        assert f"run {run_id}  completed" in stdout, stdout
    assert readers.problems == []
    assert readers.calls >= READERS  # the readers did read while the writers wrote
    # every new run asked twice; each resume only for the step it had not finished
    assert model.server.request_count - asked_before == 2 * NEW_RUNS + len(resumable)
    assert model.server.errors == []

    listed = {r["run_id"]: r for r in run_list(project)}
    assert sorted(listed) == sorted(procs)  # no row lost, none made up
    assert {r["status"] for r in listed.values()} == {"completed"}
    assert {r["steps_done"] for r in listed.values()} == {2}
    for run_id in procs:
        shown = loopengt(project, "trace", run_id, "--format", "json")
        assert shown.returncode == 0, shown.stderr
        trace = json.loads(shown.stdout)
        assert (trace["run_id"], trace["status"]) == (run_id, "completed")
        assert trace["outputs"] == outputs(run_id)  # no run saw another's state


# -- approvals ---------------------------------------------------------------------------------


def test_several_approvals_wait_at_once_and_are_answered_by_interrupt_id(
    tmp_path: Path, model: Model
) -> None:
    project = make_project(tmp_path, model.server.base_url)
    write_spec(project, "release.yaml", APPROVAL_SPEC)
    write_spec(project, "gates.yaml", PARALLEL_APPROVALS)
    starting = [
        start_loopengt(project, "run", spec, "--run-id", run_id)
        for spec, run_id in (("release.yaml", "r1"), ("release.yaml", "r2"), ("gates.yaml", "g1"))
    ]
    for proc in starting:
        stdout, stderr = finish(proc)
        assert proc.returncode == 0, stderr
        assert "waiting_approval" in stdout
    waiting = run_list(project, "--status", "waiting_approval")
    assert sorted(r["run_id"] for r in waiting) == ["g1", "r1", "r2"]

    # `approve` alone lists every approval waiting: g1 waits on two steps at once
    listed = loopengt(project, "approve")
    assert listed.returncode == 0, listed.stderr
    approvals = pending(project)
    assert sorted((a["run_id"], a["step"]) for a in approvals) == [
        ("g1", "left"),
        ("g1", "right"),
        ("r1", "publish"),
        ("r2", "publish"),
    ]
    for a in approvals:
        assert re.search(rf"^{a['run_id']}\s+{a['interrupt']}\s+{a['step']}\s", listed.stdout, re.M)
    ids = {(a["run_id"], a["step"]): a["interrupt"] for a in approvals}
    assert len(set(ids.values())) == 4

    # at once: r1 approved twice, r2 rejected and g1's second approval (by the start of its
    # id) answered, the first left waiting
    answers = {
        "r1 first": ("approve", "r1", "--json"),
        "r1 again": ("approve", "r1", "--json"),
        "r2": ("reject", "r2", "--interrupt", ids["r2", "publish"], "--comment", "no"),
        "g1 right": ("approve", "g1", "--interrupt", ids["g1", "right"][:8], "--json"),
    }
    running = {name: start_loopengt(project, *args) for name, args in answers.items()}
    done = {name: (proc, *finish(proc)) for name, proc in running.items()}
    codes = sorted(done[name][0].returncode for name in ("r1 first", "r1 again"))
    assert codes == [0, 2], {n: done[n][2] for n in ("r1 first", "r1 again")}
    loser = next(done[n] for n in ("r1 first", "r1 again") if done[n][0].returncode == 2)
    assert re.search(r"not waiting for approval|taken over", loser[2]), loser[2]
    assert not any(LOCKED.search(out + err) for _, out, err in done.values())
    assert done["r2"][0].returncode == 1 and "run r2  rejected" in done["r2"][1]
    g1 = json.loads(done["g1 right"][1].splitlines()[-1])
    assert (g1["status"], g1["pending_approval"]["step"]) == ("waiting_approval", "left")
    assert g1["outputs"] == {"right": "echo: right"}

    assert [(a["run_id"], a["step"]) for a in pending(project)] == [("g1", "left")]
    wrong = loopengt(project, "approve", "g1", "--interrupt", ids["g1", "right"])
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"error: run 'g1': interrupt {ids['g1', 'right']!r} is not an approval it waits on; "
        f"waiting: {ids['g1', 'left']} (step left)"
    ]
    no_run = loopengt(project, "approve", "--interrupt", ids["g1", "left"])
    assert no_run.returncode == 2 and "needs the run" in no_run.stderr

    last = loopengt(project, "approve", "g1", "--interrupt", ids["g1", "left"], "--json")
    assert last.returncode == 0, last.stderr
    assert json.loads(last.stdout.splitlines()[-1])["outputs"] == {
        "left": "echo: left",
        "right": "echo: right",
        "merge": "echo: merge echo: left echo: right",
    }
    assert pending(project) == []
    none = loopengt(project, "approve")
    assert (none.returncode, none.stdout.strip()) == (0, "no run is waiting for approval")
    statuses = {r["run_id"]: r["status"] for r in run_list(project)}
    assert statuses == {"r1": "completed", "r2": "rejected", "g1": "completed"}
    # r1 and r2 drafted, r1 published once; g1 ran left, right and merge once each
    assert model.server.request_count == 2 + 1 + 3


def pending(project: Path) -> list[dict[str, Any]]:
    proc = loopengt(project, "approve", "--json")
    assert proc.returncode == 0, proc.stderr
    data: list[dict[str, Any]] = json.loads(proc.stdout)
    return data


def test_runs_with_an_unknown_status_exits_2_naming_the_statuses(tmp_path: Path) -> None:
    proc = loopengt(tmp_path, "runs", "--status", "bogus")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: status 'bogus' is not a run status; use one of running, waiting_approval, "
        "interrupted, completed, stopped, failed, rejected"
    ]
