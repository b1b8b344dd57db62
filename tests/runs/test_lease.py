"""Issue 19, runs across machines: an owner lease with a heartbeat decides whether a run is
still driven, not a pid. A run whose owner is gone (on any machine) becomes resumable when its
lease ends, and a paused owner that wakes up after another process took the run over stops
without writing anything. Issue 11: a run's duration leaves out the gap before a resume.

Real parts: the CLI as subprocesses, ChatOpenAI against the scripted server in its own
process, SQLite, and PostgreSQL with two working directories standing in for two machines.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.runs.helpers import (
    cli_env,
    finish,
    loopengt,
    make_project,
    read_count,
    result_json,
    run_list,
    server_process,
    start_loopengt,
    wait_until,
    write_spec,
)

THREE_STEPS = """
    name: three-steps
    goal: Do three things in order.
    agents:
      - {name: worker, instructions: You do one thing at a time.}
    steps:
      - {name: s1, prompt: "step one"}
      - {name: s2, prompt: "step two after {{s1}}", depends_on: [s1]}
      - {name: s3, prompt: "step three after {{s2}}", depends_on: [s2]}
"""

# request 2 (step s2) hangs: the run is killed or paused in it; the echo answers the rest
SCRIPT = {"replies": ["first done", {"delay": 60, "text": "never delivered"}], "responder": "echo"}


def test_a_run_left_on_another_machine_is_resumable_once_its_lease_ends(tmp_path: Path) -> None:
    with server_process(SCRIPT, tmp_path) as (url, count_file):
        project = make_project(tmp_path / "project", url)
        spec = write_spec(project, "three.yaml", THREE_STEPS)
        proc = start_loopengt(project, "run", spec, "--run-id", "m1")
        try:
            wait_until(lambda: read_count(count_file) >= 2, what="the s2 request")
        finally:
            proc.send_signal(signal.SIGKILL)
            finish(proc)
        killed_at = time.time()

        # as if the process had run on another machine, which still renews its lease
        db = project / ".loopengt" / "loopengt.db"
        set_row(db, "m1", host="other-machine", pid=4242, lease_until=time.time() + 60)
        assert status_of(project, "m1") == "running"
        clash = loopengt(project, "resume", "m1")
        assert clash.returncode == 2
        [line] = clash.stderr.strip().splitlines()
        assert line.startswith(
            "error: run 'm1' is still running on other-machine (pid 4242); stop it there, or "
            "if that machine is gone, resume when its lease ends in "
        ), line
        assert read_count(count_file) == 2  # nothing was sent for the refused resume

        # that machine died: its lease ran out, so the run is interrupted, from here too
        set_row(db, "m1", lease_until=time.time() - 1)
        assert status_of(project, "m1") == "interrupted"
        time.sleep(max(0.0, killed_at + 2 - time.time()))  # a gap before the resume
        resumed = loopengt(project, "resume", "m1", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert result_json(resumed)["outputs"] == {
            "s1": "first done",
            "s2": "echo: step two after first done",
            "s3": "echo: step three after echo: step two after first done",
        }
        assert read_count(count_file) == 4  # s1 once, the cut-off s2, then s2 and s3

    [row] = [r for r in run_list(project) if r["run_id"] == "m1"]
    assert row["status"] == "completed"
    assert row["host"] != "other-machine" and row["lease_until"] is None
    # the duration counts the two sessions, not the gap between the kill and the resume
    assert 0 < row["duration_s"] <= row["wall_s"] - 2, row


def test_a_paused_owner_loses_the_run_to_another_machine_and_writes_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    lease = {"LOOPENGT_LEASE_SECONDS": "6"}
    with server_process(SCRIPT, tmp_path) as (url, count_file):
        a = pg_project(tmp_path / "a", url, postgres_url)
        b = pg_project(tmp_path / "b", url, postgres_url)
        write_spec(a, "three.yaml", THREE_STEPS)
        owner = subprocess.Popen(
            [sys.executable, "-m", "loopengt", "run", "three.yaml", "--run-id", "p1"],
            cwd=a,
            env={**cli_env(), **lease},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: read_count(count_file) >= 2, what="the s2 request")
            owner.send_signal(signal.SIGSTOP)  # a machine that stops answering

            # while the lease holds (held here for as long as the check takes, whatever the
            # machine's load), no other machine may take the run
            set_pg_lease(postgres_url, "p1", time.time() + 60)
            clash = cli(b, lease, "resume", "p1")
            assert clash.returncode == 2
            assert "is still running" in clash.stderr, clash.stderr
            set_pg_lease(postgres_url, "p1", time.time() - 1)  # then it runs out
            taken = cli(b, lease, "resume", "p1", "--json")
            assert taken.returncode == 0, taken.stderr
            assert result_json(taken)["status"] == "completed"
            checkpoints = checkpoint_count(postgres_url, "p1")

            owner.send_signal(signal.SIGCONT)  # it wakes up: its heartbeat finds the run taken
            _, err = finish(owner, timeout=30)
        finally:
            if owner.poll() is None:
                owner.send_signal(signal.SIGCONT)
                owner.kill()
                owner.wait()
        assert owner.returncode == 1, err
        assert "was taken over by another process" in err, err
        assert "Traceback" not in err
        # the woken owner wrote no checkpoint and left the new owner's outcome alone
        assert checkpoint_count(postgres_url, "p1") == checkpoints
        row = pg_row(postgres_url, "p1")
        assert row["status"] == "completed" and row["steps_done"] == 3
        assert read_count(count_file) == 4

    # one trace, read from the database on either machine: A's session (s1, and the s2 it
    # lost) and B's (s2, s3); B's machine never ran s1, A's never ran s3
    for machine in (a, b):
        shown = cli(machine, {}, "trace", "p1", "--format", "json")
        assert shown.returncode == 0, shown.stderr
        trace = json.loads(shown.stdout)
        assert trace["status"] == "completed"
        assert [e["session"] for e in trace["events"] if e["kind"] == "run_start"] == [1, 2]
        ends = [
            (e["session"], e["step"], e["status"])
            for e in trace["events"]
            if e["kind"] == "step_end"
        ]
        # A's cut-off s2 ends `interrupted` when A wakes up, after B's session
        assert sorted(ends) == [
            (1, "s1", "ok"),
            (1, "s2", "interrupted"),
            (2, "s2", "ok"),
            (2, "s3", "ok"),
        ], ends


# -- helpers ---------------------------------------------------------------------------------


def set_row(db: Path, run_id: str, **fields: Any) -> None:
    with sqlite3.connect(db) as conn:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(
            f"UPDATE loopengt_runs SET {assignments} WHERE run_id = ?", (*fields.values(), run_id)
        )


def status_of(project: Path, run_id: str) -> str:
    [row] = [r for r in run_list(project) if r["run_id"] == run_id]
    return str(row["status"])


def pg_project(path: Path, model_url: str, postgres_url: str) -> Path:
    make_project(path, model_url)
    config = path / ".loopengt" / "config.toml"
    text = config.read_text() + f'\n[storage]\ncheckpointer = "{postgres_url}"\n'
    config.write_text(text)
    return path


def cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        cwd=cwd,
        env={**cli_env(), **env, "PGCONNECT_TIMEOUT": "10"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pg_row(url: str, run_id: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT status, steps_done, lease_until FROM loopengt_runs WHERE run_id = %s",
            (run_id,),
        )
        row = cur.fetchone()
    assert row is not None
    return {"status": row[0], "steps_done": row[1], "lease_until": row[2] or 0.0}


def set_pg_lease(url: str, run_id: str, until: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE loopengt_runs SET lease_until = %s WHERE run_id = %s", (until, run_id))


def checkpoint_count(url: str, run_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (run_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])
