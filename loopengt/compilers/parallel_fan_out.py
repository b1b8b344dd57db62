"""parallel_fan_out: independent branches, or one step mapped over an input list with
``Send``, then an aggregator that joins the results through a reducer.

    START ──> branch_a ─┐
    START ──> branch_b ─┼──> aggregator ──> END      (one waiting edge from every branch)
    START -Send per item-> MAP ──> MAP__join ─┘

Every mapped run writes ``mapped[MAP][index]`` (reducer ``merge_mapped``); ``MAP__join`` turns
that into ``outputs[MAP]``, a list in input order whatever order the items finished in. The
aggregator waits for every branch and the join. Other steps run in dependency order, as in
the sequential pattern; a step nothing depends on ends the run (status ``completed``).
``fan_out.max_concurrency`` becomes LangGraph's ``max_concurrency`` run config (compile.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START
from langgraph.types import Send

from loopengt.graph.calls import Calls, Work
from loopengt.graph.context import CompileContext
from loopengt.graph.policy import stop
from loopengt.graph.state import Graph, LoopState, Update, add_node, add_router, merge_update
from loopengt.graph.step import StepTurn
from loopengt.graph.turn import Result
from loopengt.graph.wiring import add_step, add_turn, noop, wire
from loopengt.spec.models import LoopSpec
from loopengt.spec.roles import FanOutRoles, fan_out_roles
from loopengt.status import RunStatus

# what a mapped run sees of the shared state (besides its item); gate feedback and attempt
# counts are left out so that each item's gate loop starts afresh
CARRIED = ("input", "outputs", "usage", "started_at")


def join_node(map_step: str) -> str:
    return f"{map_step}__join"


def dispatch_node(map_step: str) -> str:
    return f"{map_step}__dispatch"


class MappedStep(StepTurn):
    """One item of the map: the step run on a Send payload. Its output goes to
    ``mapped[step][item_index]``; a gated step retries inside this node, because a gate
    loop through the graph would lose the item. Each gate attempt is a turn of its own, with
    its own step timeout and usage."""

    def turn(self, state: LoopState, calls: Calls) -> Work[Result]:
        local: dict[str, Any] = dict(state)
        total: Update = {}
        while True:
            update = yield from super().turn(local, calls)  # type: ignore[arg-type]
            assert isinstance(update, dict)  # a step's turn routes with edges, not Commands
            local, total = merge_update(local, update), merge_update(total, update)
            retry = (update.get("feedback") or {}).get(self.step.name)
            if update.get("stop_reason") or not retry:
                break
            calls = Calls(self.timeout, self.prices, calls.attempt, self.budget)
        result = {k: v for k, v in total.items() if k not in ("outputs", "feedback")}
        result.pop("gate_attempts", None)  # per item; the run-wide count would mislead a retry
        outputs = total.get("outputs") or {}
        if self.step.name in outputs:
            result["mapped"] = {
                self.step.name: {state.get("item_index", 0): outputs[self.step.name]}
            }
        return result


def item_variable(state: LoopState) -> dict[str, Any]:
    return {"item": state.get("item")}


def map_items(spec: LoopSpec, map_over: str, state: LoopState) -> Any:
    key = map_over.partition(".")[2]
    declared = spec.inputs.get(key)
    default = declared.default if declared is not None else None
    return (state.get("input") or {}).get(key, default)


def dispatcher(spec: LoopSpec, map_step: str, map_over: str) -> Callable[[LoopState], Any]:
    join = join_node(map_step)

    def dispatch(state: LoopState) -> Any:
        if state.get("stop_reason"):
            return END
        items = map_items(spec, map_over, state)
        if not isinstance(items, list) or not items:
            return join  # nothing to map (or not a list: the join reports it)
        carried = {k: state[k] for k in CARRIED if k in state}  # type: ignore[literal-required]
        turns = state.get("turns", 0)
        # item i sees the turns of the i items dispatched before it, so max_turns cuts the
        # map at the limit even though all items run in the same superstep
        return [
            Send(map_step, {**carried, "turns": turns + i, "item": item, "item_index": i})
            for i, item in enumerate(items)
        ]

    dispatch.__name__ = f"map_{map_step}"
    return dispatch


def joiner(spec: LoopSpec, map_step: str, map_over: str, sink: bool) -> Callable[..., Update]:
    def join(state: LoopState) -> Update:
        items = map_items(spec, map_over, state)
        if not isinstance(items, list):
            got = "nothing" if items is None else type(items).__name__
            reason = f"error: step {map_step!r} maps over {map_over}: not a list (got {got})"
            return {"outputs": {map_step: []}, **stop(reason, RunStatus.FAILED)}
        results = (state.get("mapped") or {}).get(map_step) or {}
        # keys may come back as strings from a checkpoint; order by the item's index
        ordered = [results[k] for k in sorted(results, key=int)]
        # written even after a stop: it only reshapes results already in state
        update: Update = {"outputs": {map_step: ordered}}
        if sink and not state.get("stop_reason"):
            update["status"] = RunStatus.COMPLETED.value
        return update

    join.__name__ = join_node(map_step)
    return join


def effective_requires(spec: LoopSpec, roles: FanOutRoles) -> dict[str, list[str]]:
    """Each step's dependencies; the aggregator also waits for every branch and the map."""
    requires = {s.name: list(s.requires) for s in spec.steps}
    if roles.aggregator is not None:
        # derived branches (steps without dependencies) include a declared aggregator that
        # lists none itself; it is still the aggregator, not a branch
        branches = [b for b in roles.branches if b != roles.aggregator]
        parallel = [*branches, *([roles.map_step] if roles.map_step else [])]
        assert roles.aggregator not in parallel, "validation rejects it (spec/pattern_checks.py)"
        declared = requires[roles.aggregator]
        requires[roles.aggregator] = parallel + [d for d in declared if d not in parallel]
    return requires


def build(ctx: CompileContext) -> Graph:
    spec = ctx.spec
    roles = fan_out_roles(spec)
    graph: Graph = ctx.new_graph("mapped")
    requires = effective_requires(spec, roles)
    has_dependants = {dep for deps in requires.values() for dep in deps}
    exits: dict[str, str] = {}
    for step in spec.steps:
        sink = step.name not in has_dependants
        if step.name == roles.map_step:
            assert roles.map_over is not None  # FanOutSpec/roles keep the two together
            add_turn(graph, MappedStep(ctx, step, variables=item_variable))
            exits[step.name] = join_node(step.name)
            add_node(graph, exits[step.name], joiner(spec, step.name, roles.map_over, sink))
            graph.add_edge(step.name, exits[step.name])
            continue
        if step.name == roles.aggregator:
            # its default prompt lists the results of `requires`: every branch, in order
            step = step.model_copy(update={"depends_on": requires[step.name], "dependencies": []})
        exits[step.name] = add_step(graph, StepTurn(ctx, step, sink=sink))
    for step in spec.steps:
        deps = [exits[d] for d in requires[step.name]]
        if step.name == roles.map_step:
            assert roles.map_over is not None
            source = START if not deps else deps[0]
            if len(deps) > 1:  # a conditional edge has one source: join the dependencies first
                source = dispatch_node(step.name)
                add_node(graph, source, noop)
                graph.add_edge(deps, source)
            route = dispatcher(spec, step.name, roles.map_over)
            add_router(graph, source, route, [step.name, join_node(step.name), END])
        else:
            wire(graph, step.name, deps)
        if step.name not in has_dependants:
            graph.add_edge(exits[step.name], END)
    return graph
