"""Long-term memory: what an agent keeps across runs, in a LangGraph store.

An agent with `memory: true` gets three tools — `remember`, `recall`, `forget` — over the
namespace ("loopengt", spec name, agent name): two specs, or two agents, never see each
other's memories. The store is LangGraph's own (`SqliteStore` in `.loopengt/memory.db`, or
`PostgresStore` beside the PostgreSQL checkpointer; under `langgraph dev`, the server's
store), compiled into the graph with `store=`, and the tools reach it through
`langgraph.config.get_store()`, as any LangGraph node would. Recall is plain keyword search
(every word of the query scored against each memory); a store configured with an embedding
index is not needed, and none is set up here.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from loopengt.spec.models import LoopSpec

MEMORY_DB = "memory.db"
TOOL_NAMES = ("remember", "recall", "forget")
RECALL_LIMIT = 5
SCAN_LIMIT = 1000
_WORD = re.compile(r"\w+")


def namespace(spec: str, agent: str) -> tuple[str, ...]:
    return ("loopengt", spec, agent)


def uses_memory(spec: LoopSpec) -> bool:
    return any(agent.memory for agent in spec.agents)


@asynccontextmanager
async def open_memory(
    spec: LoopSpec, storage_url: str | None, state_dir: Path
) -> AsyncIterator[Any]:
    """The store for a run of ``spec``: PostgreSQL when the checkpointer is, else SQLite in
    ``state_dir``; None when no agent has memory, or without a ``storage_url`` (no run)."""
    from loopengt.runs.storage import is_postgres

    if storage_url is None or not uses_memory(spec):
        yield None
        return
    if is_postgres(storage_url):
        from langgraph.store.postgres import PostgresStore

        with PostgresStore.from_conn_string(storage_url) as pg:
            pg.setup()
            yield pg
        return
    from langgraph.store.sqlite import SqliteStore

    state_dir.mkdir(parents=True, exist_ok=True)
    # its own autocommit connection (the store commits per operation), shared by threads
    conn = sqlite3.connect(
        state_dir / MEMORY_DB, check_same_thread=False, isolation_level=None, timeout=30
    )
    try:
        store = SqliteStore(conn)
        store.setup()
        yield store
    finally:
        conn.close()


def memory_tools(spec: str, agent: str) -> list[BaseTool]:
    """`remember`, `recall` and `forget` over the agent's namespace."""
    from langchain_core.tools import StructuredTool

    space = namespace(spec, agent)

    def _store() -> Any:
        from langgraph.config import get_store

        return get_store()  # the graph's store: ours, or the LangGraph server's

    def remember(text: str) -> str:
        """Keep a fact for later runs; returns its id."""
        key = uuid.uuid4().hex[:12]
        _store().put(space, key, {"text": text, "created_at": time.time()})
        return f"remembered as {key}"

    async def aremember(text: str) -> str:
        key = uuid.uuid4().hex[:12]
        await _call(_store(), "put", space, key, {"text": text, "created_at": time.time()})
        return f"remembered as {key}"

    def recall(query: str) -> str:
        """The remembered facts that best match the query's words (best first)."""
        return _best(_store().search(space, limit=SCAN_LIMIT), query)

    async def arecall(query: str) -> str:
        return _best(await _call(_store(), "search", space, limit=SCAN_LIMIT), query)

    def forget(key: str) -> str:
        """Forget the fact with this id."""
        _store().delete(space, key)
        return f"forgot {key}"

    async def aforget(key: str) -> str:
        await _call(_store(), "delete", space, key)
        return f"forgot {key}"

    return [
        StructuredTool.from_function(remember, coroutine=aremember, name="remember"),
        StructuredTool.from_function(recall, coroutine=arecall, name="recall"),
        StructuredTool.from_function(forget, coroutine=aforget, name="forget"),
    ]


async def _call(store: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``store.a<method>(...)``; a sync-only store (`SqliteStore`, `PostgresStore`) in a
    worker thread, so the event loop does not wait on the database."""
    try:
        return await getattr(store, f"a{method}")(*args, **kwargs)
    except NotImplementedError:
        return await asyncio.to_thread(getattr(store, method), *args, **kwargs)


def _best(items: list[Any], query: str) -> str:
    words = {w.lower() for w in _WORD.findall(query)}
    scored = []
    for item in items:
        text = str(item.value.get("text", ""))
        score = len(words & {w.lower() for w in _WORD.findall(text)})
        if score or not words:
            scored.append((score, item.updated_at, item.key, text))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    if not scored:
        return "nothing remembered matches"
    return "\n".join(f"[{key}] {text}" for _, _, key, text in scored[:RECALL_LIMIT])
