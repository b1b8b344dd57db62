"""The run index on its own: the compare-and-set claim that keeps two processes from both
resuming (or both approving) one run, and how a dead process's run is shown."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from loopengt.runs.engine import list_runs
from loopengt.runs.index import RunRecord
from loopengt.runs.storage import open_storage


def record(run_id: str, status: str, pid: int) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        spec_name="s",
        spec_path="s.yaml",
        spec_text="",
        status=status,
        host=socket.gethostname(),
        pid=pid,
    )


def test_only_the_first_claim_on_a_run_wins(tmp_path: Path) -> None:
    with open_storage(root=tmp_path) as storage:
        storage.index.insert(record("w1", "waiting_approval", 1))
        seen = {"status": "waiting_approval", "pid": 1}
        assert storage.index.claim("w1", seen, status="running", pid=2)
        assert not storage.index.claim("w1", seen, status="running", pid=3)
        claimed = storage.index.get("w1")
    assert claimed is not None
    assert (claimed.status, claimed.pid) == ("running", 2)


def test_a_running_row_whose_process_is_gone_lists_as_interrupted(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    dead_pid = int(gone.stdout)
    with open_storage(root=tmp_path) as storage:
        storage.index.insert(record("dead", "running", dead_pid))
        storage.index.insert(record("alive", "running", os.getpid()))
    statuses = {r.run_id: r.status for r in list_runs(root=tmp_path)}
    assert statuses == {"dead": "interrupted", "alive": "running"}
    assert [r.run_id for r in list_runs(root=tmp_path, status="interrupted")] == ["dead"]


_OUT = {"capture_output": True, "text": True, "check": True}


def test_a_new_database_opens_while_another_process_writes_it(tmp_path: Path) -> None:
    """Switching a new database to WAL does not wait on SQLite's busy handler: a writer
    holding it made `open_storage` fail at once with "database is locked"."""
    path = tmp_path / ".loopengt" / "loopengt.db"
    path.parent.mkdir()
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close()  # rollback mode
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO other VALUES (1)')\n"
            "print('writing', flush=True); time.sleep(1.5); c.execute('COMMIT')\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    with open_storage(root=tmp_path) as storage:  # waits for the writer instead of failing
        assert storage.index.runs() == []
    writer.wait(timeout=10)
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
