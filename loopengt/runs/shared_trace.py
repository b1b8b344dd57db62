"""A run's trace in the database, for runs that move between machines.

Why: the trace is a file under the project's `.loopengt/runs/`, on the machine that ran the
session. With PostgreSQL, a run started on one machine may be resumed or approved on another;
each machine's file would hold only its own sessions. So with PostgreSQL every event line is
also written to `loopengt_events`, and reading a trace reads it from there: one trace, from
any machine. The local file is still written (a SIGKILL loses nothing there), and SQLite
projects, one machine by nature, keep only the file.

Lines are written by a thread of their own, so a slow database never holds up the run's event
loop; `close` waits for the last of them.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

from loopengt.config import Config
from loopengt.runs.index import RunIndex
from loopengt.tracing.events import Event, Trace, dumps_line, summarize


class SharedEvents:
    """The event lines of one run in `loopengt_events` (PostgreSQL)."""

    def __init__(self, index: RunIndex, run_id: str) -> None:
        self.index = index
        self.run_id = run_id
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self.failed: str | None = None
        """Why lines could not be written (the local file still has them)."""

    def read(self) -> list[Event]:
        return read_events(self.index, self.run_id)

    def __call__(self, line: Event) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_all, daemon=True)
            self._writer.start()
        self._queue.put(line)

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def _write_all(self) -> None:
        sql = "INSERT INTO loopengt_events (run_id, line) VALUES (?, ?)"
        while (line := self._queue.get()) is not None:
            if self.failed is None:
                try:
                    self.index.write(sql, (self.run_id, dumps_line(line)))
                except Exception as exc:
                    self.failed = f"{type(exc).__name__}: {exc}"


def read_events(index: RunIndex, run_id: str) -> list[Event]:
    sql = index.sql_for("SELECT line FROM loopengt_events WHERE run_id = ? ORDER BY id")
    with index.lock:
        rows = index.conn.execute(sql, (run_id,)).fetchall()
    return [json.loads(row["line"] if isinstance(row, dict) else row[0]) for row in rows]


def run_trace(run_id: str, config: Config, checkpointer: str | None = None) -> Trace:
    """A run's trace: from the database when the runs are in PostgreSQL and it has the run's
    lines, else from the project's `.loopengt/runs/` files."""
    from loopengt.runs.engine import check_run_id
    from loopengt.runs.storage import is_postgres, open_storage, storage_url
    from loopengt.tracing.exports import load_run

    check_run_id(run_id)  # it names a file under .loopengt/runs/
    if is_postgres(storage_url(checkpointer, config)):
        with open_storage(checkpointer, config=config) as storage:
            events = read_events(storage.index, run_id)
        if events:
            return summarize(events, run_id=run_id)
    return load_run(run_id, Path(config.state_dir) / "runs")
