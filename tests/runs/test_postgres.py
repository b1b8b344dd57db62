"""Durable runs on PostgreSQL, through the real CLI as subprocesses.

Each test gets a fresh database on a real server (tests/support/postgres.py) and an
OpenAI-compatible scripted server that echoes prompts. Working directories stand in for
machines: nothing is shared between them but the PostgreSQL URL, so a run started in one
and approved in another is "started on one machine, resumed on another".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loopengt.runs.storage import open_storage
from tests.support.openai_server import ScriptedOpenAIServer, last_user_text

REPO = Path(__file__).resolve().parents[2]

SPEC = textwrap.dedent("""
    name: release-notes
    goal: Write release notes.
    inputs:
      version: {description: The version being released.}
    agents:
      - {name: writer, instructions: You write release notes.}
    steps:
      - name: draft
        agent: writer
        prompt: "Draft notes for version {{input.version}}."
      - name: publish
        agent: writer
        depends_on: [draft]
        prompt: "Publish these notes: {{draft}}"
""")

APPROVAL = textwrap.dedent("""
    policy:
      approvals:
        - step: publish
          message: "Publish the notes?"
""")


def machine(path: Path, echo_server: ScriptedOpenAIServer, *, storage: str | None = None) -> Path:
    """A working directory whose only state is `.loopengt/config.toml` naming the model."""
    config = f'[llm]\nmodel = "openai:test-model"\nbase_url = "{echo_server.base_url}"\n'
    if storage:
        config += f'\n[storage]\ncheckpointer = "{storage}"\n'
    (path / ".loopengt").mkdir(parents=True)
    (path / ".loopengt" / "config.toml").write_text(config)
    return path


def with_spec(path: Path, approval: bool = False) -> Path:
    (path / "notes.yaml").write_text(SPEC + (APPROVAL if approval else ""))
    return path


def loopengt(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LOOPENGT_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_", "PG"))
    }
    env.update(OPENAI_API_KEY="test", PYTHONPATH=str(REPO), COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_out(result: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout)


def index_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        sql = "SELECT run_id, spec_name, status, steps_done FROM loopengt_runs ORDER BY run_id"
        return conn.execute(sql).fetchall()


def checkpoint_count(url: str, run_id: str) -> int:
    with psycopg.connect(url) as conn:
        sql = "SELECT count(*) FROM checkpoints WHERE thread_id = %s"
        row = conn.execute(sql, (run_id,)).fetchone()
    assert row is not None
    return int(row[0])


def no_sqlite(*dirs: Path) -> None:
    for d in dirs:
        assert not (d / ".loopengt" / "loopengt.db").exists(), f"SQLite used in {d}"


def test_a_run_completes_and_is_indexed_in_postgres(
    tmp_path: Path, postgres_url: str, echo_server: ScriptedOpenAIServer
) -> None:
    a = with_spec(machine(tmp_path / "a", echo_server))
    result = json_out(
        loopengt(a, "run", "notes.yaml", "-i", "version=v2", "--run-id", "pg-plain",
                 "--checkpointer", postgres_url, "--json")
    )  # fmt: skip

    assert result["status"] == "completed"
    assert result["outputs"] == {
        "draft": "echo: Draft notes for version v2.",
        "publish": "echo: Publish these notes: echo: Draft notes for version v2.",
    }
    assert echo_server.request_count == 2
    listed = json_out(loopengt(a, "runs", "--checkpointer", postgres_url, "--json"))
    assert [(r["run_id"], r["status"], r["steps_done"]) for r in listed] == [
        ("pg-plain", "completed", 2)
    ]
    assert listed[0]["tokens"] > 0
    # both the run index and the checkpoints live in PostgreSQL, none in a local file
    assert index_rows(postgres_url) == [("pg-plain", "release-notes", "completed", 2)]
    assert checkpoint_count(postgres_url, "pg-plain") >= 3
    no_sqlite(a)


def test_started_on_one_machine_approved_on_another(
    tmp_path: Path, postgres_url: str, echo_server: ScriptedOpenAIServer
) -> None:
    a = with_spec(machine(tmp_path / "a", echo_server), approval=True)
    b = machine(tmp_path / "b", echo_server)  # no spec, no runs, no database: only the model config
    started = json_out(
        loopengt(a, "run", "notes.yaml", "-i", "version=v3", "--run-id", "pg-approve",
                 "--checkpointer", postgres_url, "--json")
    )  # fmt: skip
    assert started["status"] == "waiting_approval"
    assert started["pending_approval"]["message"] == "Publish the notes?"
    assert started["outputs"] == {"draft": "echo: Draft notes for version v3."}
    assert echo_server.request_count == 1
    assert index_rows(postgres_url) == [("pg-approve", "release-notes", "waiting_approval", 1)]

    assert sorted(p.name for p in (b / ".loopengt").iterdir()) == ["config.toml"]
    approved = json_out(
        loopengt(b, "approve", "pg-approve", "--comment", "ship it",
                 "--checkpointer", postgres_url, "--json")
    )  # fmt: skip

    assert approved["status"] == "completed"
    assert approved["outputs"] == {
        "draft": "echo: Draft notes for version v3.",
        "publish": "echo: Publish these notes: echo: Draft notes for version v3.",
    }
    # the draft came from the checkpoint: only the publish step asked the model again
    assert echo_server.request_count == 2
    assert last_user_text(echo_server.requests[1]).startswith("Publish these notes:")
    listed = json_out(loopengt(b, "runs", "--checkpointer", postgres_url, "--json"))
    assert [(r["run_id"], r["status"]) for r in listed] == [("pg-approve", "completed")]
    assert index_rows(postgres_url) == [("pg-approve", "release-notes", "completed", 2)]
    no_sqlite(a, b)


def test_rejected_on_another_machine(
    tmp_path: Path, postgres_url: str, echo_server: ScriptedOpenAIServer
) -> None:
    a = with_spec(machine(tmp_path / "a", echo_server), approval=True)
    b = machine(tmp_path / "b", echo_server)
    started = loopengt(a, "run", "notes.yaml", "-i", "version=v4", "--run-id", "pg-reject",
                       "--checkpointer", postgres_url)  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "loopengt approve pg-reject" in started.stderr

    rejected = json_out(
        loopengt(b, "reject", "pg-reject", "--comment", "not yet",
                 "--checkpointer", postgres_url, "--json"),
        code=1,
    )  # fmt: skip

    assert rejected["status"] == "rejected"
    assert rejected["stop_reason"].startswith("rejected: step 'publish' was not approved")
    assert list(rejected["outputs"]) == ["draft"]
    assert echo_server.request_count == 1
    assert index_rows(postgres_url) == [("pg-reject", "release-notes", "rejected", 1)]


def test_storage_section_of_config_selects_postgres(
    tmp_path: Path, postgres_url: str, echo_server: ScriptedOpenAIServer
) -> None:
    a = with_spec(machine(tmp_path / "a", echo_server, storage=postgres_url))
    result = json_out(loopengt(a, "run", "notes.yaml", "-i", "version=v5", "--run-id",
                               "pg-config", "--json"))  # fmt: skip
    assert result["status"] == "completed"

    listed = json_out(loopengt(a, "runs", "--json"))
    assert [(r["run_id"], r["status"]) for r in listed] == [("pg-config", "completed")]
    assert index_rows(postgres_url) == [("pg-config", "release-notes", "completed", 2)]
    no_sqlite(a)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


@pytest.mark.parametrize("command", [["run", "notes.yaml", "-i", "version=1"], ["runs"]])
def test_unreachable_server_is_one_line_and_exit_2(
    tmp_path: Path, echo_server: ScriptedOpenAIServer, command: list[str]
) -> None:
    a = with_spec(machine(tmp_path / "a", echo_server))
    url = f"postgresql://loopengt@127.0.0.1:{closed_port()}/loopengt"

    result = loopengt(a, *command, "--checkpointer", url)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: checkpointer: cannot connect to PostgreSQL:")
    assert "refused" in lines[0]
    assert echo_server.request_count == 0
    no_sqlite(a)


def test_processes_meeting_an_empty_database_at_once_all_set_it_up(postgres_url: str) -> None:
    # Concurrent CREATE TABLE IF NOT EXISTS races (UniqueViolation on pg_type) unless the
    # schema is created under a lock; separate connections, released together.
    workers = 8
    barrier = threading.Barrier(workers)
    errors: list[str] = []

    def first_use() -> None:
        barrier.wait()
        try:
            with open_storage(postgres_url) as storage:
                storage.index.runs()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=first_use) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert index_rows(postgres_url) == []
