"""The run index: one row per run, in the same database as the checkpoints.

SQLite (`.loopengt/loopengt.db`) by default, PostgreSQL when the checkpointer is; the SQL is
shared and only the parameter style differs. Rows are written with short transactions so
many `loopengt run` processes can share one SQLite file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

COLUMNS = (
    "run_id",
    "spec_name",
    "spec_path",
    "spec_text",
    "status",
    "stop_reason",
    "steps_done",
    "tokens",
    "cost_usd",
    "started_at",
    "ended_at",
    "host",
    "pid",
    "trace_path",
    "options",
    "run_seconds",
    "owner",
    "lease_until",
)

CREATE = """
CREATE TABLE IF NOT EXISTS loopengt_runs (
    run_id TEXT PRIMARY KEY,
    spec_name TEXT NOT NULL,
    spec_path TEXT NOT NULL,
    spec_text TEXT NOT NULL,
    status TEXT NOT NULL,
    stop_reason TEXT,
    steps_done INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    trace_path TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    run_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    lease_until DOUBLE PRECISION
)
"""

# PostgreSQL only: every run's trace lines, so a run resumed on another machine has one trace
# (loopengt/runs/shared_trace.py)
CREATE_EVENTS = (
    """
CREATE TABLE IF NOT EXISTS loopengt_events (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    line TEXT NOT NULL
)
""",
    "CREATE INDEX IF NOT EXISTS loopengt_events_run ON loopengt_events (run_id, id)",
)

# columns added after the first release: (name, SQL type), added to older databases on open
ADDED_COLUMNS = (
    ("run_seconds", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("owner", "TEXT NOT NULL DEFAULT ''"),
    ("lease_until", "DOUBLE PRECISION"),
)

# eval results, kept with the run (`loopengt eval`); the latest per run is what `runs` shows
CREATE_EVALS = """
CREATE TABLE IF NOT EXISTS loopengt_evals (
    run_id TEXT PRIMARY KEY,
    score DOUBLE PRECISION,
    result TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""


@dataclass
class RunRecord:
    run_id: str
    spec_name: str
    spec_path: str
    spec_text: str
    status: str
    stop_reason: str | None = None
    steps_done: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    host: str = ""
    pid: int = 0
    trace_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    run_seconds: float = 0.0
    """Time the run's sessions ran, summed: not the gaps between a Ctrl-C (or a kill, or an
    approval) and the session that continued it. A live session adds to it as it goes."""
    owner: str = ""
    """The process driving the run (`host:pid:token`); only it may write the row's outcome."""
    lease_until: float | None = None
    """Until when the owner's claim holds (epoch seconds): it renews it while it runs, so a
    `running` row past its lease has lost its process, on whatever machine."""
    score: float | None = None
    """The judge's score from the run's latest eval (not a column: read from its evals)."""

    @property
    def duration_s(self) -> float | None:
        """How long the run ran (`run_seconds`); for rows written before that column, the
        wall time from start to end."""
        if self.run_seconds:
            return self.run_seconds
        return None if self.ended_at is None else self.ended_at - self.started_at

    @property
    def wall_s(self) -> float | None:
        """From start to end, pauses included."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    def summary(self) -> dict[str, Any]:
        """What `loopengt runs --json` prints: everything but the spec text."""
        out = asdict(self)
        del out["spec_text"]
        out["duration_s"] = self.duration_s
        out["wall_s"] = self.wall_s
        return out


class RunIndex:
    """Rows of ``loopengt_runs`` over a DB-API connection (sqlite3 or psycopg)."""

    def __init__(self, conn: Any, *, postgres: bool, lock: Any = None) -> None:
        self.conn = conn
        self.postgres = postgres
        # the checkpointer's lock: it shares this connection from LangGraph's worker threads
        self.lock = lock or threading.Lock()
        if postgres or not sqlite_has(conn, "loopengt_runs", "loopengt_evals"):
            self.write(CREATE)  # a write transaction: skipped when there is nothing to do,
            self.write(CREATE_EVALS)  # so reading runs never waits for a writer's lock
        for statement in CREATE_EVENTS if postgres else ():
            self.write(statement)
        for name, kind in self._missing_columns():
            self.write(f"ALTER TABLE loopengt_runs ADD COLUMN {name} {kind}")

    def _missing_columns(self) -> list[tuple[str, str]]:
        """Columns an older loopengt's table lacks (read without a write lock)."""
        if self.postgres:
            rows = self.conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'loopengt_runs' AND table_schema = current_schema()"
            ).fetchall()
        else:
            rows = self.conn.execute("SELECT name FROM pragma_table_info('loopengt_runs')")
        have = {row["column_name"] if isinstance(row, dict) else row[0] for row in rows}
        return [(name, kind) for name, kind in ADDED_COLUMNS if name not in have]

    def sql_for(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one write; returns how many rows it changed."""
        with self.lock:
            return self._write_locked(sql, params)

    def _write_locked(self, sql: str, params: tuple[Any, ...]) -> int:
        if self.postgres:  # psycopg connections here run in autocommit mode
            return int(self.conn.execute(self.sql_for(sql), params).rowcount)
        # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers wait on the
        # busy timeout instead of failing with "database is locked" on lock upgrade
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            changed = int(self.conn.execute(sql, params).rowcount)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return changed

    def insert(self, record: RunRecord) -> None:
        values = tuple(_db_value(getattr(record, c)) for c in COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        self.write(f"INSERT INTO loopengt_runs ({', '.join(COLUMNS)}) VALUES ({marks})", values)

    def update(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown run index columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        values = tuple(_db_value(v) for v in fields.values())
        self.write(f"UPDATE loopengt_runs SET {assignments} WHERE run_id = ?", (*values, run_id))

    def claim(self, run_id: str, seen: dict[str, Any], **fields: Any) -> bool:
        """Update the row only if it still holds the ``seen`` values (compare-and-set), so of
        two processes resuming or answering one run, only one goes on. Whether it did."""
        unknown = (set(fields) | set(seen)) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown run index columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        conditions = "".join(f" AND {name} = ?" for name in seen)
        values = tuple(_db_value(v) for v in (*fields.values(), run_id, *seen.values()))
        sql = f"UPDATE loopengt_runs SET {assignments} WHERE run_id = ?{conditions}"
        return self.write(sql, values) == 1

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._select("WHERE r.run_id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(self, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        tail = f" LIMIT {int(limit)}" if limit else ""
        return self._select(f"{where} ORDER BY started_at DESC{tail}", params)

    def save_eval(self, run_id: str, score: float | None, result: dict[str, Any]) -> None:
        """Keep ``result`` as the run's eval, replacing an earlier one."""
        values = (run_id, score, json.dumps(result, default=str), time.time())
        self.write(
            "INSERT INTO loopengt_evals (run_id, score, result, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO UPDATE SET score = excluded.score,"
            " result = excluded.result, created_at = excluded.created_at",
            values,
        )

    # Async callers (the run engine, evals, the MCP server) use these: each runs its SQL in a
    # worker thread, so waiting for SQLite's write lock never blocks the event loop, where
    # another run's async checkpointer may hold that lock between two awaits.

    async def aget(self, run_id: str) -> RunRecord | None:
        return await asyncio.to_thread(self.get, run_id)

    async def ainsert(self, record: RunRecord) -> None:
        await asyncio.to_thread(self.insert, record)

    async def aupdate(self, run_id: str, **fields: Any) -> None:
        await asyncio.to_thread(functools.partial(self.update, run_id, **fields))

    async def aclaim(self, run_id: str, seen: dict[str, Any], **fields: Any) -> bool:
        return await asyncio.to_thread(functools.partial(self.claim, run_id, seen, **fields))

    async def asave_eval(self, run_id: str, score: float | None, result: dict[str, Any]) -> None:
        await asyncio.to_thread(self.save_eval, run_id, score, result)

    def _select(self, clause: str, params: tuple[Any, ...]) -> list[RunRecord]:
        columns = ", ".join(f"r.{c}" for c in COLUMNS)
        sql = self.sql_for(
            f"SELECT {columns}, e.score FROM loopengt_runs r"
            f" LEFT JOIN loopengt_evals e ON e.run_id = r.run_id {clause}"
        )
        with self.lock:
            rows = self.conn.execute(sql, params).fetchall()
        return [_record(row) for row in rows]


def sqlite_has(conn: Any, *tables: str) -> bool:
    """Whether a SQLite database has all of ``tables`` (a read: takes no write lock)."""
    marks = ", ".join("?" for _ in tables)
    sql = f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"
    return int(conn.execute(sql, tables).fetchone()[0]) == len(tables)


def _db_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict) else value


def _record(row: Any) -> RunRecord:
    names = (*COLUMNS, "score")
    values = dict(row) if isinstance(row, dict) else dict(zip(names, row, strict=True))
    values["options"] = json.loads(values.get("options") or "{}")
    return RunRecord(**values)
