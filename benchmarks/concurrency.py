"""Many concurrent runs of a compiled spec on one event loop, against hand-written LangGraph.

    uv run python benchmarks/concurrency.py [--runs 200] [--steps 5] [--delay 0.05]
                                            [--repeats 3] [--quick] [--json]

``--runs`` concurrent ``await graph.ainvoke(...)`` (``asyncio.gather`` on one event loop,
one process) of a ``--steps``-step sequential spec (s1 -> s2 -> ..., one agent) whose
every model call is an async ``--delay`` sleep, with the graph compiled once and reused
(no checkpointer). Baseline, measured in the same invocation: a hand-written async
``StateGraph`` of the same shape, whose nodes ``await model.ainvoke(...)`` on the same
model with a similar system + human prompt and write the reply into a dict state. The
model is ``loopengt.providers.testing.TestModel(delay=...)`` (``asyncio.sleep`` under
``ainvoke``, ``time.sleep`` under ``invoke``).
Targets: wall time loopengt / hand-written <= 1.3x, and loopengt's RSS growth over the
runs <= 50 MB.

Each side runs in a fresh subprocess per repeat (sides interleaved A/B, B/A, ...), so the
other side's allocations neither hide nor inflate its memory figure. RSS growth is the
peak RSS during the runs (VmHWM, reset after compiling) minus the RSS after import,
compile and a gc; the runs include one warm-up ``ainvoke`` before the timed batch. Wall
time is the median over repeats of the timed batch (best shown too).

"model calls in flight" is the peak number of model calls running at once: with all runs
really concurrent it equals ``--runs``. A compiled graph whose nodes are synchronous
functions runs them on the loop's default thread pool (min(32, CPUs + 4) workers) under
``ainvoke``, so its runs queue behind those threads. (The compiled graph carries
``max_concurrency`` in its config: that bounds tasks per superstep within one run, not
runs, so it does not limit this benchmark.) ``--quick`` is a CI smoke test: 20 runs,
1 repeat, no verdict. ``--json`` prints only the result rows.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

from common import Row, chain_spec, chain_topology, compiled, emit, hand_graph
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

WALL_TARGET = 1.3  # loopengt wall time / hand-written wall time
RSS_TARGET_MB = 50.0  # loopengt's RSS growth over the runs
QUICK_RUNS, QUICK_REPEATS = 20, 1
SIDES = ("loopengt", "hand-written")
# -- the model -----------------------------------------------------------------------------


class Tally:
    """Model calls made in this process, and the most that were ever running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.peak = self.sync_calls = self.async_calls = 0

    def enter(self, is_async: bool) -> None:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if is_async:
                self.async_calls += 1
            else:
                self.sync_calls += 1

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def reset(self) -> None:
        with self.lock:
            self.peak = self.in_flight
            self.sync_calls = self.async_calls = 0


TALLY = Tally()


class Counting:
    """Mixed in before a chat model class: counts its calls in TALLY."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
        TALLY.enter(is_async=False)
        try:
            return super()._generate(messages, *args, **kw)  # type: ignore[misc, no-any-return]
        finally:
            TALLY.leave()

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
        TALLY.enter(is_async=True)
        try:
            return await super()._agenerate(messages, *args, **kw)  # type: ignore[misc, no-any-return]
        finally:
            TALLY.leave()


def model_source() -> str:
    return "loopengt.providers.testing.TestModel"


def make_model(delay: float) -> BaseChatModel:
    """The delayed model both sides call, counting its calls in TALLY."""
    from loopengt.providers.testing import TestModel

    counted = types.new_class("CountedTestModel", (Counting, TestModel))
    return counted(delay=delay)  # type: ignore[no-any-return]


# -- the two graphs: common.chain_spec compiled, and common.hand_graph (async nodes) ----------


def step_names(steps: int) -> list[str]:
    return list(chain_topology(steps))


def build(side: str, steps: int, model: BaseChatModel) -> Any:
    if side == "loopengt":
        return compiled(chain_spec(steps), model)
    return hand_graph(chain_topology(steps), model, is_async=True)


# -- one side in its own process -----------------------------------------------------------


def proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Make VmHWM (peak RSS) start again from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


async def run_batch(graph: Any, runs: int, steps: int) -> float:
    payloads = [{"input": {"topic": "concurrency", "run": i}} for i in range(runs)]
    start = time.perf_counter()
    results = await asyncio.gather(*(graph.ainvoke(payload) for payload in payloads))
    wall = time.perf_counter() - start
    for result in results:
        if sorted(result.get("outputs") or {}) != sorted(step_names(steps)):
            raise SystemExit(f"a run did not produce every step's output: {result}")
    return wall


async def timed_runs(graph: Any, runs: int, steps: int) -> float:
    await run_batch(graph, 1, steps)  # warm-up: first-call imports and caches
    TALLY.reset()
    return await run_batch(graph, runs, steps)


def worker(side: str, runs: int, steps: int, delay: float) -> dict[str, Any]:
    """Compile (or build) the graph, then time ``runs`` concurrent runs; RSS in kB."""
    model = make_model(delay)
    graph = build(side, steps, model)
    gc.collect()
    rss_before = proc_status_kb("VmRSS")
    peak_reset = reset_peak_rss()
    wall = asyncio.run(timed_runs(graph, runs, steps))
    rss_after, hwm = proc_status_kb("VmRSS"), proc_status_kb("VmHWM")
    if rss_before is None or rss_after is None:  # no /proc: only ru_maxrss (kB on Linux)
        import resource

        rss_after = hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_reset = False
    return {
        "side": side,
        "wall": wall,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "peak_kb": hwm if peak_reset else None,
        "in_flight_peak": TALLY.peak,
        "sync_calls": TALLY.sync_calls,
        "async_calls": TALLY.async_calls,
    }


def spawn(side: str, runs: int, steps: int, delay: float) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", side]
    argv += ["--runs", str(runs), "--steps", str(steps), "--delay", str(delay)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the {side} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the parent: interleave, summarise, judge ----------------------------------------------


def growth_mb(sample: dict[str, Any]) -> float:
    """Peak RSS during the runs minus RSS before them (or RSS after, without a peak)."""
    before = sample["rss_before_kb"] or 0
    end = sample["peak_kb"] if sample["peak_kb"] is not None else sample["rss_after_kb"]
    return float(max(0, end - before)) / 1024


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [s["wall"] for s in samples]
    return {
        "median": statistics.median(walls),
        "best": min(walls),
        # worst repeat: the honest figure for a limit
        "growth_mb": max(growth_mb(s) for s in samples),
        "end_growth_mb": max(
            float(max(0, s["rss_after_kb"] - (s["rss_before_kb"] or 0))) / 1024 for s in samples
        ),
        "in_flight": min(s["in_flight_peak"] for s in samples),
        "sync_calls": samples[-1]["sync_calls"],
        "async_calls": samples[-1]["async_calls"],
        "peak_measured": all(s["peak_kb"] is not None for s in samples),
    }


def measure(runs: int, steps: int, delay: float, repeats: int) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for i in range(repeats):
        for side in SIDES if i % 2 == 0 else tuple(reversed(SIDES)):
            samples[side].append(spawn(side, runs, steps, delay))
    return {side: summarise(samples[side]) for side in SIDES}


def rows(result: dict[str, dict[str, Any]], judge: bool) -> list[Row]:
    mine, hand = result["loopengt"], result["hand-written"]
    return [
        Row(
            "concurrent_200_wall",
            "s",
            hand["median"],
            mine["median"],
            WALL_TARGET,
            judged=judge,
            note=f"{mine['in_flight']} calls in flight",
        ),
        Row(
            "concurrent_200_rss_growth",
            "MB",
            hand["growth_mb"],
            mine["growth_mb"],
            RSS_TARGET_MB,
            compare="value<=",
            judged=judge,
        ),
    ]


def print_table(result: dict[str, dict[str, Any]], args: argparse.Namespace, judge: bool) -> None:
    threads = min(32, (os.cpu_count() or 1) + 4)
    ideal = args.steps * args.delay * 1e3
    print(
        f"{args.runs} concurrent ainvoke runs on one event loop, {args.steps}-step chain, "
        f"every model call {args.delay * 1e3:g} ms (async sleep)"
    )
    print(
        f"each side in a fresh subprocess per repeat, {args.repeats} repeat(s) interleaved; "
        f"one run alone takes >= {ideal:g} ms"
    )
    print(f"model: {model_source()}")
    print(
        f"\n{'side':<14}{'median ms':>11}{'best ms':>10}{'RSS +MB':>9}{'(at end)':>10}"
        f"{'calls in flight':>17}{'model calls sync/async':>24}"
    )
    for side in SIDES:
        r = result[side]
        calls = f"{r['sync_calls']}/{r['async_calls']}"
        print(
            f"{side:<14}{r['median'] * 1e3:>11.1f}{r['best'] * 1e3:>10.1f}"
            f"{r['growth_mb']:>9.1f}{r['end_growth_mb']:>10.1f}{r['in_flight']:>17}{calls:>24}"
        )
    print(
        "(RSS +MB: peak RSS during warm-up + runs minus RSS after compile, worst repeat; "
        "calls in flight: peak model calls running at once, lowest over repeats)"
    )
    if not all(result[side]["peak_measured"] for side in SIDES):
        print("note: could not reset the peak RSS here; RSS +MB is the growth at the end")
    if result["hand-written"]["in_flight"] < args.runs:
        print(
            f"WARNING: the hand-written runs peaked at {result['hand-written']['in_flight']} "
            f"calls in flight, not {args.runs}: they were not all concurrent"
        )
    if result["loopengt"]["sync_calls"]:
        print(
            f"note: loopengt's nodes called the model synchronously: they ran on the loop's "
            f"default thread pool ({threads} workers here), hence its calls in flight"
        )
    mine, hand = result["loopengt"], result["hand-written"]
    ratio = mine["median"] / hand["median"]
    wall_mark = ("ok" if ratio <= WALL_TARGET else "MISSED") if judge else "(no verdict)"
    rss_ok = mine["growth_mb"] <= RSS_TARGET_MB
    rss_mark = ("ok" if rss_ok else "MISSED") if judge else "(no verdict)"
    print(f"\nwall time loopengt/hand-written: {ratio:.2f}x  target <= {WALL_TARGET}x  {wall_mark}")
    print(
        f"RSS growth of loopengt over the runs: {mine['growth_mb']:.1f} MB "
        f"(hand-written {hand['growth_mb']:.1f} MB)  target <= {RSS_TARGET_MB:g} MB  {rss_mark}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, help="concurrent runs (default 200)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per model call")
    parser.add_argument("--repeats", type=int, help="batches per side (default 3)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 20 runs, 1 repeat")
    parser.add_argument("--json", action="store_true", help="print only the result rows")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.runs = args.runs or (QUICK_RUNS if args.quick else 200)
    args.repeats = args.repeats or (QUICK_REPEATS if args.quick else 3)
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs, args.steps, args.delay)))
        return
    result = measure(args.runs, args.steps, args.delay, args.repeats)
    judge = not args.quick
    if args.json:
        emit(rows(result, judge), as_json=True)
    else:
        print_table(result, args, judge)


if __name__ == "__main__":
    main()
