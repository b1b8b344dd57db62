"""What every benchmark shares: the result row, and the hand-written LangGraph baseline.

A figure is a `Row`: the loopengt value, the baseline measured in the same run, their ratio
and the target. Each script prints its own table, or with `--json` only its rows (a JSON
list on stdout), which `run_all.py` collects. The baseline graphs here are what an engineer
would write by hand with LangGraph for the same topology: a dict state with one reducer,
nodes that build a prompt from their dependencies and call the same model.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, TypedDict

Compare = Literal["ratio<=", "value<=", "ratio>=", "value=="]


@dataclass
class Row:
    """One figure: ``value`` (loopengt) against ``baseline`` (measured in the same run)."""

    name: str
    unit: str
    baseline: float | None
    value: float | None
    target: float
    compare: Compare = "ratio<="
    """What the target bounds: the ratio value/baseline, or the value itself."""
    note: str = ""
    judged: bool = True
    """False in --quick runs: small counts say the script works, not whether a target is met."""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        measured = self.ratio if self.compare.startswith("ratio") else self.value
        if not self.judged or measured is None:
            return None
        if self.compare.endswith("<="):
            return measured <= self.target
        if self.compare.endswith(">="):
            return measured >= self.target
        return measured == self.target

    @property
    def target_text(self) -> str:
        what = "ratio" if self.compare.startswith("ratio") else self.unit
        op = {"<=": "≤", ">=": "≥", "==": "="}[self.compare[-2:]]
        return f"{op} {self.target:g}×" if what == "ratio" else f"{op} {self.target:g} {what}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        ratio = self.ratio
        data.update(
            ratio=None if ratio is None else round(ratio, 3),
            target=self.target_text,
            target_value=self.target,
            **{"pass": self.passed},
        )
        for key in ("baseline", "value"):
            if isinstance(data[key], float):
                data[key] = round(data[key], 4)
        return data


def emit(rows: list[Row], as_json: bool) -> None:
    """Print ``rows``: a JSON list for run_all.py, else a table."""
    if as_json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    print(table([row.as_dict() for row in rows]))


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as an aligned text table."""
    header = ("figure", "baseline", "loopengt", "ratio", "target", "result")
    lines = [header]
    for row in rows:
        verdict = {True: "pass", False: "MISSED", None: "-"}[row["pass"]]
        lines.append(
            (
                row["name"],
                _num(row["baseline"], row["unit"]),
                _num(row["value"], row["unit"]),
                "-" if row["ratio"] is None else f"{row['ratio']:.3f}×",
                row["target"],
                verdict + (f" ({row['note']})" if row.get("note") else ""),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in lines
    )


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.3g} {unit}".strip()


# -- the model both sides call ---------------------------------------------------------------


def instant_model(delay: float = 0.0) -> Any:
    """A chat model answering "ok", after ``delay`` seconds (a sleep, awaited under
    ``ainvoke``), with no other work: what is measured is the graph around it."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class InstantModel(BaseChatModel):
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
            if self.delay:  # without this, ainvoke would run _generate on a thread
                await asyncio.sleep(self.delay)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])

        @property
        def _llm_type(self) -> str:
            return "instant"

    return InstantModel(delay=delay)


# -- specs and the hand-written graphs of the same topology ---------------------------------

GOAL = "Benchmark."
INSTRUCTIONS = "You work."


def chain_spec(steps: int) -> str:
    lines = [
        f"  - {{name: s{i}{f', depends_on: [s{i - 1}]' if i > 1 else ''}, description: Step s{i}.}}"
        for i in range(1, steps + 1)
    ]
    return (
        textwrap.dedent(f"""\
        name: chain
        goal: {GOAL}
        agents: [{{name: worker, instructions: {INSTRUCTIONS}}}]
        policy: {{max_turns: {steps * 10}}}
        steps:
        """)
        + "\n".join(lines)
        + "\n"
    )


def fan_out_spec(branches: int) -> str:
    """Branches run by agent `brancher`, the join by `joiner` (so each can get its model)."""
    names = [f"b{i}" for i in range(1, branches + 1)]
    steps = "\n".join(
        f"  - {{name: {n}, agent: brancher, description: Branch {n}.}}" for n in names
    )
    return textwrap.dedent(f"""\
        name: fan-out
        goal: {GOAL}
        pattern: parallel_fan_out
        fan_out: {{branches: [{", ".join(names)}], aggregator: agg}}
        agents:
          - {{name: brancher, instructions: {INSTRUCTIONS}}}
          - {{name: joiner, instructions: You join.}}
        policy: {{max_turns: 50}}
        steps:
        """) + (steps + f"\n  - {{name: agg, agent: joiner, depends_on: [{', '.join(names)}]}}\n")


def chain_topology(steps: int) -> dict[str, list[str]]:
    return {f"s{i}": [f"s{i - 1}"] if i > 1 else [] for i in range(1, steps + 1)}


def fan_topology(branches: int) -> dict[str, list[str]]:
    names = [f"b{i}" for i in range(1, branches + 1)]
    return {**{n: [] for n in names}, "agg": names}


def compiled(spec_text: str, models: Any, **kwargs: Any) -> Any:
    from loopengt import compile_spec
    from loopengt.spec import load_spec_text

    return compile_spec(load_spec_text(spec_text), models=models, **kwargs)


def merge(left: dict[str, str] | None, right: dict[str, str] | None) -> dict[str, str]:
    return {**(left or {}), **(right or {})}


class HandState(TypedDict, total=False):
    input: dict[str, Any]
    outputs: Annotated[dict[str, str], merge]


def hand_node(name: str, deps: list[str], model: Any, is_async: bool) -> Callable[..., Any]:
    """A node as one would write it by hand (``async def`` awaiting ``ainvoke`` if
    ``is_async``): a prompt from the goal, the input and the dependencies' outputs."""
    from langchain_core.messages import HumanMessage, SystemMessage

    def messages(state: dict[str, Any]) -> list[Any]:
        outputs = state.get("outputs") or {}
        parts = [f"Goal: {GOAL}", f"Your task ({name}): Step {name}."]
        parts.append(f"Run input:\n{json.dumps(state['input'])}")
        parts += [f"Result of step {dep!r}:\n{outputs.get(dep, '')}" for dep in deps]
        return [SystemMessage(INSTRUCTIONS), HumanMessage("\n\n".join(parts))]

    def node(state: dict[str, Any]) -> dict[str, Any]:
        return {"outputs": {name: str(model.invoke(messages(state)).text)}}

    async def anode(state: dict[str, Any]) -> dict[str, Any]:
        return {"outputs": {name: str((await model.ainvoke(messages(state))).text)}}

    return anode if is_async else node


def hand_graph(
    topology: Mapping[str, list[str]],
    model: Any,
    *,
    is_async: bool = False,
    checkpointer: Any = None,
) -> Any:
    """The hand-written graph: ``topology`` maps node -> dependencies."""
    from langgraph.graph import END, START, StateGraph

    graph: Any = StateGraph(HandState)
    has_dependants = {d for deps in topology.values() for d in deps}
    for name, deps in topology.items():
        graph.add_node(name, hand_node(name, deps, model, is_async))
        graph.add_edge(deps if len(deps) > 1 else (deps[0] if deps else START), name)
        if name not in has_dependants:
            graph.add_edge(name, END)
    return graph.compile(checkpointer=checkpointer)


PAYLOAD = {"input": {"topic": "benchmarks"}}
