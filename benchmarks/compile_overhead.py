"""What does a compiled LoopSpec cost per run, against the same graph written by hand?

    uv run python benchmarks/compile_overhead.py [--rounds 600] [--quick] [--json]

Rows (the baseline is measured in the same process, rounds interleaved A/B so drift hits
both sides alike; medians after a warm-up):

- ``{chain,fanout5}_{invoke,ainvoke}``: a 3-step chain, and a fan-out to 5 branches plus an
  aggregator, on a zero-latency model: per-run time of the compiled spec vs a hand-written
  LangGraph graph of the same topology (`common.hand_graph`) calling the same model.
  ``ainvoke`` rounds all run on one event loop against ``async def`` hand-written nodes.
  Target ≤ 1.10×.
- ``{chain,fanout5}_sqlite_trace_{invoke,ainvoke}``: the same with a SQLite checkpointer on
  both sides (``durability="sync"``: every superstep on disk before the next) and, on
  loopengt's side, the trace written as `loopengt run` writes it (event stream, one JSON
  line per event, the summary at the end). Target ≤ 1.25×.
- ``fanout8_200ms_wall``: 8 branches whose model call sleeps 200 ms, one run's wall time
  vs one branch alone (the aggregator's model is instant): the branches must overlap.
  Target ≤ 1.10×.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import (
    PAYLOAD,
    Row,
    chain_spec,
    chain_topology,
    compiled,
    emit,
    fan_out_spec,
    fan_topology,
    hand_graph,
    instant_model,
)

TARGET, DURABLE_TARGET = 1.10, 1.25
BRANCH_SLEEP = 0.2
CASES = {"chain": (chain_spec(3), chain_topology(3)), "fanout5": (fan_out_spec(5), fan_topology(5))}

Run = Callable[[], Any]
ARun = Callable[[], Awaitable[Any]]


def ab_medians(a: Run, b: Run, rounds: int, warmup: int) -> tuple[float, float]:
    """Median seconds of ``a()`` and ``b()``, in interleaved rounds."""
    times: dict[Run, list[float]] = {a: [], b: []}
    for i in range(warmup + rounds):
        for side in (a, b) if i % 2 == 0 else (b, a):
            start = time.perf_counter()
            side()
            if i >= warmup:
                times[side].append(time.perf_counter() - start)
    return statistics.median(times[a]), statistics.median(times[b])


async def aab_medians(a: ARun, b: ARun, rounds: int, warmup: int) -> tuple[float, float]:
    times: dict[ARun, list[float]] = {a: [], b: []}
    for i in range(warmup + rounds):
        for side in (a, b) if i % 2 == 0 else (b, a):
            start = time.perf_counter()
            await side()
            if i >= warmup:
                times[side].append(time.perf_counter() - start)
    return statistics.median(times[a]), statistics.median(times[b])


# -- per-run overhead, in memory ----------------------------------------------------------------


def overhead_rows(rounds: int, warmup: int, judged: bool) -> list[Row]:
    rows = []
    model = instant_model()
    for case, (spec, topology) in CASES.items():
        mine, hand = compiled(spec, model), hand_graph(topology, model)
        ours, theirs = ab_medians(
            lambda g=mine: g.invoke(PAYLOAD), lambda g=hand: g.invoke(PAYLOAD), rounds, warmup
        )
        rows.append(Row(f"{case}_invoke", "s", theirs, ours, TARGET, judged=judged))
        ahand = hand_graph(topology, model, is_async=True)
        ours, theirs = asyncio.run(
            aab_medians(
                lambda g=mine: g.ainvoke(PAYLOAD),
                lambda g=ahand: g.ainvoke(PAYLOAD),
                rounds,
                warmup,
            )
        )
        rows.append(Row(f"{case}_ainvoke", "s", theirs, ours, TARGET, judged=judged))
    return rows


# -- with a SQLite checkpointer and the trace -----------------------------------------------------


def _thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


class Traced:
    """One loopengt run as `loopengt run` makes it: the event stream, the trace recorder
    writing each event, the run's end summarized into its trace file."""

    def __init__(self, graph: Any, runs_dir: Path) -> None:
        self.graph, self.runs_dir = graph, runs_dir

    def _start(self) -> tuple[Any, Any, dict[str, Any]]:
        from loopengt.tracing import RunEvents, TraceRecorder
        from loopengt.tracing.events import EventKind

        config = _thread()
        run_id = config["configurable"]["thread_id"]
        events = RunEvents(run_id, max_chars=4000, prices={})
        recorder = TraceRecorder(run_id, runs_dir=self.runs_dir, spec_name="bench")
        events.subscribe(recorder)
        events.publish(EventKind.RUN_START, spec="bench", input=PAYLOAD["input"], resumed=False)
        return events, recorder, {**config, "callbacks": [events]}

    @staticmethod
    def _end(events: Any, recorder: Any, values: dict[str, Any]) -> None:
        from loopengt.tracing.events import EventKind

        usage, status = values.get("usage") or {}, values.get("status") or "completed"
        events.publish(EventKind.RUN_END, status=status, usage=dict(usage), outputs={})
        recorder.finish(status=status, usage=usage)

    def __call__(self) -> None:
        events, recorder, config = self._start()
        for mode, chunk in self.graph.stream(
            PAYLOAD, config, stream_mode=["updates"], durability="sync"
        ):
            events.chunk(mode, chunk)
        self._end(events, recorder, self.graph.get_state(config).values)

    async def arun(self) -> None:
        events, recorder, config = self._start()
        async for mode, chunk in self.graph.astream(
            PAYLOAD, config, stream_mode=["updates"], durability="sync"
        ):
            events.chunk(mode, chunk)
        self._end(events, recorder, (await self.graph.aget_state(config)).values)


def durable_rows(rounds: int, warmup: int, judged: bool, folder: Path) -> list[Row]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    rows = []
    model = instant_model()
    for case, (spec, topology) in CASES.items():
        conns = [
            sqlite3.connect(folder / f"{case}-{side}.db", check_same_thread=False)
            for side in ("ours", "hand")
        ]
        for conn in conns:
            conn.execute("PRAGMA journal_mode=WAL")
        mine = Traced(compiled(spec, model, checkpointer=SqliteSaver(conns[0])), folder / "runs")
        hand = hand_graph(topology, model, checkpointer=SqliteSaver(conns[1]))
        ours, theirs = ab_medians(
            mine, lambda g=hand: g.invoke(PAYLOAD, _thread(), durability="sync"), rounds, warmup
        )
        rows.append(
            Row(f"{case}_sqlite_trace_invoke", "s", theirs, ours, DURABLE_TARGET, judged=judged)
        )
        ours, theirs = asyncio.run(_adurable(case, spec, topology, rounds, warmup, folder))
        rows.append(
            Row(f"{case}_sqlite_trace_ainvoke", "s", theirs, ours, DURABLE_TARGET, judged=judged)
        )
        for conn in conns:
            conn.close()
    return rows


async def _adurable(
    case: str, spec: str, topology: dict[str, list[str]], rounds: int, warmup: int, folder: Path
) -> tuple[float, float]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    model = instant_model()
    async with (
        aiosqlite.connect(folder / f"{case}-aours.db") as ours_db,
        aiosqlite.connect(folder / f"{case}-ahand.db") as hand_db,
    ):
        for db in (ours_db, hand_db):
            await db.execute("PRAGMA journal_mode=WAL")
        mine = Traced(
            compiled(spec, model, checkpointer=AsyncSqliteSaver(ours_db)), folder / "runs"
        )
        hand = hand_graph(topology, model, is_async=True, checkpointer=AsyncSqliteSaver(hand_db))
        return await aab_medians(
            mine.arun, lambda: hand.ainvoke(PAYLOAD, _thread(), durability="sync"), rounds, warmup
        )


# -- overlapping branches -------------------------------------------------------------------------


def wall_row(runs: int, judged: bool) -> Row:
    models = {"brancher": instant_model(BRANCH_SLEEP), "joiner": instant_model()}
    eight, one = compiled(fan_out_spec(8), models), compiled(fan_out_spec(1), models)
    ours, alone = ab_medians(
        lambda: asyncio.run(eight.ainvoke(PAYLOAD)),
        lambda: asyncio.run(one.ainvoke(PAYLOAD)),
        runs,
        1,
    )
    return Row(
        "fanout8_200ms_wall", "s", alone, ours, TARGET, judged=judged, note="vs one branch alone"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=600, help="A/B rounds per row")
    parser.add_argument("--wall-runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="CI smoke: tiny counts, no verdict")
    parser.add_argument("--json", action="store_true", help="print only the rows, as JSON")
    args = parser.parse_args()
    rounds, warmup, walls = (20, 5, 2) if args.quick else (args.rounds, 50, args.wall_runs)
    judged = not args.quick
    with tempfile.TemporaryDirectory(prefix="loopengt-bench-") as folder:
        rows = overhead_rows(rounds, warmup, judged)
        rows += durable_rows(max(rounds // 3, 5), max(warmup // 3, 2), judged, Path(folder))
        rows.append(wall_row(walls, judged))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
