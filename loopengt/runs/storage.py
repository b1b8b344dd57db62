"""Where runs live: a LangGraph checkpointer plus the run index, in one database.

Default: SQLite at `.loopengt/loopengt.db` (WAL, long busy timeout, so concurrent
`loopengt run` processes share it). A `postgresql://` URL — from `--checkpointer` or
`[storage] checkpointer` in config — uses langgraph-checkpoint-postgres, so any machine
that reaches the server can resume any run.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt.config import Config
from loopengt.errors import LoopengtError, UserInputError
from loopengt.project import shown_path
from loopengt.runs.index import RunIndex, sqlite_has

DB_FILE = "loopengt.db"
BUSY_TIMEOUT_SECONDS = 120
CONNECT_TIMEOUT_SECONDS = 10
# a pg_advisory_lock key of our own ("loop"), held while creating the schema
SCHEMA_LOCK_KEY = 0x6C6F6F70
SCHEMA_LOCK_TIMEOUT_SECONDS = 120


@dataclass
class Storage:
    checkpointer: Any
    index: RunIndex
    url: str


def storage_url(explicit: str | None, config: Config) -> str:
    url = explicit or config.storage.get("checkpointer")
    if url:
        return str(url)
    return str(config.state_dir / DB_FILE)


@contextmanager
def open_storage(
    explicit: str | None = None, root: Path | str | None = None, *, config: Config | None = None
) -> Iterator[Storage]:
    """The project's storage with a synchronous checkpointer (for `invoke`, reading runs)."""
    url = storage_url(explicit, config or Config.load(root))
    if is_postgres(url):
        with _postgres(url) as storage:
            yield storage
        return
    with _sqlite(Path(url)) as storage:
        yield storage


@asynccontextmanager
async def aopen_storage(explicit: str | None, config: Config) -> AsyncIterator[Storage]:
    """The same storage with an async checkpointer, for runs driven by `astream`: a sync
    checkpointer under the async API would block the event loop on every checkpoint. The
    run index keeps its own short synchronous transactions; async callers make them in a
    worker thread (`RunIndex.aget` and the other `a...` methods)."""
    url = storage_url(explicit, config)
    if is_postgres(url):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection
        from psycopg.rows import dict_row

        async with _in_thread(_postgres(url)) as storage:  # the schema, under its lock
            pg = await AsyncConnection.connect(
                url, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
            async with pg:
                yield Storage(AsyncPostgresSaver(pg), storage.index, storage.url)
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with (
        _in_thread(_sqlite(Path(url))) as storage,  # the file, WAL and the tables
        aiosqlite.connect(url, timeout=BUSY_TIMEOUT_SECONDS) as lite,
    ):
        yield Storage(AsyncSqliteSaver(lite), storage.index, storage.url)


@asynccontextmanager
async def _in_thread(opened: AbstractContextManager[Storage]) -> AsyncIterator[Storage]:
    """Enter and leave a synchronous storage in a worker thread. Its SQL may wait for the
    database's write lock, and under an event loop the lock may be held by another run's
    async checkpointer between two awaits: waiting on the loop's own thread would stop that
    run from ever committing (a deadlock until the busy timeout)."""
    storage = await asyncio.to_thread(opened.__enter__)
    try:
        yield storage
    finally:
        await asyncio.to_thread(opened.__exit__, None, None, None)


def _until_unlocked(work: Callable[[], Any]) -> None:
    """Run ``work``, again while the database is locked, up to the busy timeout. Switching a
    new database to WAL needs an exclusive lock and SQLite does not wait for it on its busy
    handler: a run starting while another process writes the new database failed at once with
    "database is locked" (an eval of 10 cases at concurrency 4 did, now and then)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            work()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def is_postgres(url: str) -> bool:
    if url.startswith(("postgresql://", "postgres://")):
        return True
    if "://" in url:
        raise UserInputError(f"checkpointer {url!r}: use a SQLite file path or a postgresql:// URL")
    return False


@contextmanager
def _sqlite(path: Path) -> Iterator[Storage]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we open our own transactions; SqliteSaver commits its own
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None
    )
    try:
        saver = SqliteSaver(conn)
        if not sqlite_has(conn, "checkpoints", "writes"):  # else it sets up lazily, on use:
            # WAL: a reader must not wait for a writer
            _until_unlocked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            _until_unlocked(saver.setup)
        yield Storage(saver, RunIndex(conn, postgres=False, lock=saver.lock), shown_path(path))
    finally:
        conn.close()


@contextmanager
def _postgres(url: str) -> Iterator[Storage]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError:
        raise UserInputError(
            "a postgresql:// checkpointer needs langgraph-checkpoint-postgres: "
            "pip install 'loopengt[postgres]'"
        ) from None
    # libpq waits forever (psycopg: 130 s) for a host that drops packets; a URL or
    # PGCONNECT_TIMEOUT that sets its own timeout wins
    own_timeout = "connect_timeout" in url or os.environ.get("PGCONNECT_TIMEOUT")
    timeout = None if own_timeout else CONNECT_TIMEOUT_SECONDS
    try:
        conn = psycopg.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=timeout
        )
    except psycopg.Error as exc:  # also ProgrammingError: a bad option in the URL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise UserInputError(f"checkpointer: cannot connect to PostgreSQL: {first}") from None
    try:
        with _schema_lock(conn):
            saver = PostgresSaver(conn)
            saver.setup()
            index = RunIndex(conn, postgres=True, lock=saver.lock)
        yield Storage(saver, index, without_password(url))
    finally:
        conn.close()


@contextmanager
def _schema_lock(conn: Any) -> Iterator[None]:
    """Create the schema one process at a time: processes that meet an empty database at
    once would race on the same tables (UniqueViolation on pg_type, checkpoint_migrations).

    Polled with pg_try_advisory_lock: a session blocked in pg_advisory_lock holds a snapshot,
    and the saver's CREATE INDEX CONCURRENTLY waits for every snapshot -> deadlock."""
    deadline = time.monotonic() + SCHEMA_LOCK_TIMEOUT_SECONDS
    locked = "SELECT pg_try_advisory_lock(%s) AS locked"
    while not conn.execute(locked, (SCHEMA_LOCK_KEY,)).fetchone()["locked"]:
        if time.monotonic() > deadline:
            raise LoopengtError("checkpointer: timed out waiting for the PostgreSQL schema lock")
        time.sleep(0.05)
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


def without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6 literals keep their brackets
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
