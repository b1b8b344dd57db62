"""What does compiling a LoopSpec cost at run time, against a hand-written LangGraph graph?

    uv run python benchmarks/compile_overhead.py [--rounds 300] [--breakdown]

(a) a 3-step chain and (b) fan-out to 5 branches + an aggregator, with a zero-latency fake
model: per-invoke time of the compiled spec vs a hand-written graph of the same topology
whose nodes call the same model with a similar prompt and write to a dict state (target
<= 1.10x). The same for ``ainvoke``, all rounds on one event loop: the compiled graph's
``ainvoke`` vs a hand-written graph whose nodes are ``async def`` and await the model's
``ainvoke`` (target <= 1.10x). (c) 8 branches whose model call sleeps 200 ms: one run's wall
time vs a single 200 ms branch, for both graphs (target <= 1.10x, i.e. the branches really
overlap).

The rows above use only loopengt's public API. ``--breakdown`` also builds hand-written
variants from loopengt's internal state module; while that moves, it is skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import textwrap
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import END, START, StateGraph

from loopengt import compile_spec
from loopengt.spec import load_spec_text

try:  # internals, for --breakdown only
    from loopengt.graph.state import CORE_CHANNELS, new_usage, state_schema
except Exception as exc:  # e.g. moved by a refactor: the main rows do not need them
    INTERNALS_MISSING: str | None = f"{type(exc).__name__}: {exc}"
else:
    INTERNALS_MISSING = None

TARGET = 1.10
BRANCH_SLEEP = 0.2
HAS_FAN_OUT = importlib.util.find_spec("loopengt.compilers.parallel_fan_out") is not None
FAN_OUT_PATTERN = "parallel_fan_out" if HAS_FAN_OUT else "sequential"
AGENTS = ("brancher", "joiner")


class InstantModel(BaseChatModel):
    """Answers at once with a fixed message; ``delay`` makes each call take that long."""

    delay: float = 0.0

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if self.delay:
            time.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        # without this, BaseChatModel would run _generate on a thread under ainvoke
        if self.delay:
            await asyncio.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])

    @property
    def _llm_type(self) -> str:
        return "instant"


# -- the compiled side ---------------------------------------------------------------------


def chain_spec() -> str:
    return """
        name: chain
        goal: Benchmark a chain.
        agents: [{name: worker, instructions: You work.}]
        steps:
          - {name: s1, description: Step one.}
          - {name: s2, depends_on: [s1], description: Step two.}
          - {name: s3, depends_on: [s2], description: Step three.}
        policy: {max_turns: 50}
    """


def fan_out_spec(branches: int) -> str:
    """Branches run by agent `brancher`, the join by `joiner` (so each can get its model)."""
    names = [f"b{i}" for i in range(1, branches + 1)]
    steps = "\n".join(
        f"      - {{name: {n}, agent: brancher, description: Branch {n}.}}" for n in names
    )
    pattern = f"pattern: {FAN_OUT_PATTERN}"
    block = f"fan_out: {{branches: [{', '.join(names)}], aggregator: agg}}" if HAS_FAN_OUT else ""
    return f"""
    name: fan-out
    goal: Benchmark a fan-out.
    {pattern}
    {block}
    agents:
      - {{name: brancher, instructions: You work.}}
      - {{name: joiner, instructions: You join.}}
    steps:
{steps}
      - {{name: agg, agent: joiner, depends_on: [{", ".join(names)}], description: Join.}}
    policy: {{max_turns: 50}}
    """


def compiled(spec_text: str, models: Any) -> Any:
    return compile_spec(load_spec_text(textwrap.dedent(spec_text)), models=models)


# -- the hand-written side -----------------------------------------------------------------


def merge(left: dict[str, str] | None, right: dict[str, str] | None) -> dict[str, str]:
    return {**(left or {}), **(right or {})}


class HandState(TypedDict, total=False):
    input: dict[str, Any]
    outputs: Annotated[dict[str, str], merge]


def hand_node(
    name: str,
    deps: list[str],
    model: BaseChatModel,
    full_update: bool = False,
    is_async: bool = False,
) -> Callable[[dict[str, Any]], Any]:
    """A node as one would write it by hand (``async def`` awaiting the model's ``ainvoke``
    with ``is_async``); ``full_update`` also writes what a StepNode writes besides the
    output (turns, visits, usage, the reply message)."""

    def messages(state: dict[str, Any]) -> list[BaseMessage]:
        outputs = state.get("outputs") or {}
        prompt = f"Goal: Benchmark.\n\nYour task ({name}): {name}\n\nRun input:\n{state['input']}"
        for dep in deps:
            prompt += f"\n\nResult of step {dep!r}:\n{outputs.get(dep, '')}"
        return [SystemMessage("You work."), HumanMessage(prompt)]

    def update_for(reply: BaseMessage) -> dict[str, Any]:
        update: dict[str, Any] = {"outputs": {name: str(reply.text)}}
        if full_update:
            usage = new_usage(0, 0, 0.0)
            update.update(turns=1, visits={name: 1}, usage=usage, messages=[reply])
        return update

    def node(state: dict[str, Any]) -> dict[str, Any]:
        return update_for(model.invoke(messages(state)))

    async def anode(state: dict[str, Any]) -> dict[str, Any]:
        return update_for(await model.ainvoke(messages(state)))

    return anode if is_async else node


def hand_graph(
    topology: dict[str, list[str]],
    models: Mapping[str, BaseChatModel],
    schema: Any = HandState,
    full_update: bool = False,
    is_async: bool = False,
) -> Any:
    """``topology`` maps node -> dependencies; ``models`` node -> model."""
    graph: Any = StateGraph(schema)
    has_dependants = {d for deps in topology.values() for d in deps}
    for name, deps in topology.items():
        graph.add_node(name, hand_node(name, deps, models[name], full_update, is_async))
        graph.add_edge(deps if len(deps) > 1 else (deps[0] if deps else START), name)
        if name not in has_dependants:
            graph.add_edge(name, END)
    return graph.compile()


def chain_topology() -> dict[str, list[str]]:
    return {"s1": [], "s2": ["s1"], "s3": ["s2"]}


def fan_topology(branches: int) -> dict[str, list[str]]:
    names = [f"b{i}" for i in range(1, branches + 1)]
    return {**{n: [] for n in names}, "agg": names}


# -- measuring -----------------------------------------------------------------------------

PAYLOAD = {"input": {"topic": "benchmarks"}}


def time_once(graph: Any) -> float:
    start = time.perf_counter()
    graph.invoke(PAYLOAD)
    return time.perf_counter() - start


def ab_medians(a: Any, b: Any, rounds: int, warmup: int = 30) -> tuple[float, float]:
    """Median seconds per invoke of a and b, measured in interleaved rounds so drift
    (CPU frequency, GC, other load) hits both alike."""
    for _ in range(warmup):
        time_once(a), time_once(b)
    ta, tb = [], []
    for i in range(rounds):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        t1, t2 = time_once(first), time_once(second)
        ta.append(t1 if first is a else t2)
        tb.append(t2 if first is a else t1)
    return statistics.median(ta), statistics.median(tb)


async def atime_once(graph: Any) -> float:
    start = time.perf_counter()
    await graph.ainvoke(PAYLOAD)
    return time.perf_counter() - start


async def aab_medians(a: Any, b: Any, rounds: int, warmup: int = 30) -> tuple[float, float]:
    """``ab_medians`` for ``ainvoke``, every round awaited on the running event loop."""
    for _ in range(warmup):
        await atime_once(a), await atime_once(b)
    ta, tb = [], []
    for i in range(rounds):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        t1 = await atime_once(first)
        t2 = await atime_once(second)
        ta.append(t1 if first is a else t2)
        tb.append(t2 if first is a else t1)
    return statistics.median(ta), statistics.median(tb)


def verdict(ratio: float) -> str:
    return "ok" if ratio <= TARGET else "MISSED"


def overhead_table(rounds: int) -> None:
    instant = InstantModel()
    # one compiled graph per case serves invoke and ainvoke; the hand-written one is built
    # twice, with plain and with async def nodes
    shapes = [
        ("(a) 3-step chain", compiled(chain_spec(), instant), chain_topology()),
        (
            "(b) fan-out 5 + agg",
            compiled(fan_out_spec(5), dict.fromkeys(AGENTS, instant)),
            fan_topology(5),
        ),
    ]
    cases = [
        (case, graph_c, hand_graph(topo, dict.fromkeys(topo, instant), is_async=is_async))
        for is_async in (False, True)
        for case, graph_c, topo in shapes
    ]
    print(f"per-call time, zero-latency model: medians of {rounds} interleaved A/B rounds")
    print(f"after warm-up; target compiled/hand <= {TARGET}x")
    print("ainvoke rows: all rounds on one event loop, hand-written nodes are async def")
    print(f"compiled fan-out pattern: {FAN_OUT_PATTERN}")
    if not HAS_FAN_OUT:
        print(
            "note: loopengt.compilers.parallel_fan_out is not there yet; the compiled side of "
            "(b)/(c) is a sequential DAG with the same topology (branches -> aggregator)"
        )
    print(f"\n{'case':<22}{'call':<9}{'compiled ms':>12}{'hand ms':>10}{'ratio':>8}")

    def row(case: str, call: str, c: float, h: float) -> None:
        print(
            f"{case:<22}{call:<9}{c * 1e3:>12.3f}{h * 1e3:>10.3f}{c / h:>7.2f}x  {verdict(c / h)}"
        )

    for case, graph_c, graph_h in cases[: len(shapes)]:
        row(case, "invoke", *ab_medians(graph_c, graph_h, rounds))

    async def async_rows() -> None:  # one event loop for every ainvoke round
        for case, graph_c, graph_h in cases[len(shapes) :]:
            row(case, "ainvoke", *await aab_medians(graph_c, graph_h, rounds))

    asyncio.run(async_rows())


def wall_table(runs: int) -> None:
    """8 branches of 200 ms each should take ~200 ms in all if they really overlap."""
    instant, slow = InstantModel(), InstantModel(delay=BRANCH_SLEEP)
    topo = fan_topology(8)
    graphs = {
        "compiled": compiled(fan_out_spec(8), {"brancher": slow, "joiner": instant}),
        "hand-written": hand_graph(topo, {n: instant if n == "agg" else slow for n in topo}),
    }
    print(f"\n(c) 8 branches x {BRANCH_SLEEP * 1e3:.0f} ms each, median wall time of {runs} runs")
    print(f"{'graph':<14}{'run config':<20}{'wall ms':>9}{'vs 200 ms':>11}")
    # LangGraph runs sync nodes on a thread pool of min(32, CPUs + 4) workers by default
    for label, config in (("default", None), ("max_concurrency=8", {"max_concurrency": 8})):
        for name, graph in graphs.items():
            graph.invoke(PAYLOAD, config)  # warm-up
            walls = []
            for _ in range(runs):
                start = time.perf_counter()
                graph.invoke(PAYLOAD, config)
                walls.append(time.perf_counter() - start)
            ratio = statistics.median(walls) / BRANCH_SLEEP
            wall = statistics.median(walls) * 1e3
            # the target is loopengt's; the hand-written rows show what plain LangGraph does
            mark = verdict(ratio) if name == "compiled" else ""
            print(f"{name:<14}{label:<20}{wall:>9.1f}{ratio:>10.2f}x  {mark}")
    print(f"(thread pool default here: {min(32, (os.cpu_count() or 1) + 4)} workers)")


def breakdown_table(rounds: int) -> None:
    """Where the compiled chain's extra time goes: hand-written variants that add one
    ingredient of the compiled graph at a time, ending with the compiled spec itself."""
    if INTERNALS_MISSING is not None:
        print(
            f"\nbreakdown skipped: loopengt.graph.state internals unavailable ({INTERNALS_MISSING})"
        )
        return
    instant = InstantModel()
    topo, models = chain_topology(), dict.fromkeys(chain_topology(), instant)
    core = state_schema(frozenset())
    variants = {
        "hand-written, 2-key state": hand_graph(topo, models),
        f"+ core state ({len(CORE_CHANNELS)} channels)": hand_graph(topo, models, core),
        "+ turns/visits/usage/messages writes": hand_graph(topo, models, core, True),
        "compiled spec (StepNode, retry, ...)": compiled(chain_spec(), instant),
    }
    for _ in range(30):
        for graph in variants.values():
            time_once(graph)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        order = list(variants.items())
        for name, graph in order if i % 2 else reversed(order):
            times[name].append(time_once(graph))
    print(f"\nbreakdown, 3-step chain, medians of {rounds} rounds")
    base = previous = statistics.median(times["hand-written, 2-key state"])
    for name in variants:
        median = statistics.median(times[name])
        step = (median - previous) * 1e6
        print(f"{name:<40}{median * 1e6:>8.0f} us{median / base:>7.2f}x{step:>+9.0f} us")
        previous = median


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--wall-runs", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="where the overhead goes")
    args = parser.parse_args()
    overhead_table(args.rounds)
    wall_table(args.wall_runs)
    if args.breakdown:
        breakdown_table(args.rounds)


if __name__ == "__main__":
    main()
