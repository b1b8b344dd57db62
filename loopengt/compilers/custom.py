"""custom: nodes and conditional edges declared in the spec's ``graph`` block.

Every step is a node (gated steps get their gate loop). ``graph.entry`` follows START;
``{from, to}`` is a plain edge (``to: END`` ends the run there); ``{from, branches, default}``
is a conditional edge whose first matching branch wins, else ``default``, else END. A node
with no outgoing edge ends the run. Conditional routes to END pass through a ``finish`` node
that marks the run completed; a router that finds ``stop_reason`` set goes straight to END.

A step whose output is an object with a boolean ``pass`` is a verdict: it is kept in
``verdicts[step]`` and its ``feedback`` becomes ``{{feedback}}`` for every step (and is
appended to the prompt of a plain-text step that has no prompt of its own).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START

from loopengt.graph.calls import Calls
from loopengt.graph.context import CompileContext
from loopengt.graph.gates import load_verifier, run_verifier
from loopengt.graph.state import Graph, LoopState, Update, add_node, add_router
from loopengt.graph.step import Attempt, StepTurn
from loopengt.graph.wiring import add_step
from loopengt.serialization import as_text
from loopengt.spec.models import Condition, EdgeSpec
from loopengt.status import RunStatus

SPEC_END = "END"  # how a spec names the end of the graph
# key in `feedback` (step -> text) holding the latest verdict's feedback; no step name starts
# with "__", so it cannot clash with a gate's retry feedback
LATEST_VERDICT = "__verdict__"
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}
Test = Callable[[LoopState], bool]


def latest_feedback(state: LoopState) -> str:
    return (state.get("feedback") or {}).get(LATEST_VERDICT, "")


def feedback_variables(state: LoopState) -> dict[str, Any]:
    return {"feedback": latest_feedback(state)}


def feedback_note(state: LoopState) -> str:
    feedback = latest_feedback(state)
    return f"\n\nFeedback on the previous attempt: {feedback}" if feedback else ""


def as_verdict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and isinstance(value.get("pass"), bool):
        return value
    return None


class CustomStep(StepTurn):
    """A step that also records a verdict-shaped output for conditions and feedback."""

    def done(self, state: LoopState, update: Update, outcome: Attempt, calls: Calls) -> Update:
        update = super().done(state, update, outcome, calls)
        verdict = as_verdict((update.get("outputs") or {}).get(self.step.name))
        if verdict is not None:
            update["verdicts"] = {self.step.name: verdict}
            feedback = {LATEST_VERDICT: str(verdict.get("feedback") or "")}
            update["feedback"] = {**(update.get("feedback") or {}), **feedback}
        return update


def verdict_of(state: LoopState, step: str) -> dict[str, Any] | None:
    found = as_verdict((state.get("verdicts") or {}).get(step))
    return found or as_verdict((state.get("outputs") or {}).get(step))


def counter_value(state: LoopState, counter: str) -> int:
    if counter == "turns":
        return state.get("turns", 0)
    step = counter.partition(".")[2]
    return (state.get("visits") or {}).get(step, 0)


def condition_test(cond: Condition, source: str) -> Test:
    """The state test of one branch condition (``step`` defaults to the edge's source)."""
    step = cond.step or source
    if cond.output_contains is not None:
        text = cond.output_contains

        def contains(state: LoopState) -> bool:
            outputs = state.get("outputs") or {}
            return step in outputs and text in as_text(outputs[step])

        return contains
    if cond.verdict is not None:
        wanted = cond.verdict == "pass"

        def verdict(state: LoopState) -> bool:
            found = verdict_of(state, step)
            return found is not None and found["pass"] is wanted

        return verdict
    if cond.counter is not None:
        counter, compare, value = cond.counter, OPS[cond.op], cond.value
        return lambda state: compare(counter_value(state, counter), value)
    assert cond.verifier is not None  # Condition allows exactly one kind
    verifier = load_verifier(cond.verifier)  # at compile time: a missing plugin fails early

    def verified(state: LoopState) -> bool:
        outputs = state.get("outputs") or {}
        return step in outputs and run_verifier(verifier, outputs[step], step).passed

    return verified


def edge_router(edge: EdgeSpec, finish: str) -> Callable[[LoopState], str]:
    def target(name: str | None) -> str:
        return finish if name in (None, SPEC_END) else str(name)

    tests = [(condition_test(b.when, edge.source), target(b.to)) for b in edge.branches]
    fallback = target(edge.default)

    def route(state: LoopState) -> str:
        if state.get("stop_reason"):
            return END
        return next((to for test, to in tests if test(state)), fallback)

    route.__name__ = f"route_{edge.source}"
    return route


def finish_node(state: LoopState) -> Update:
    return {} if state.get("stop_reason") else {"status": RunStatus.COMPLETED.value}


def build(ctx: CompileContext) -> Graph:
    spec = ctx.spec
    assert spec.graph is not None, "validation requires a graph block (spec/pattern_checks.py)"
    names = [s.name for s in spec.steps]
    edges = spec.graph.edges
    sources = {e.source for e in edges}
    ends_at = {e.source for e in edges if e.to == SPEC_END}
    finish = "finish"
    while finish in names:
        finish += "_"
    graph = ctx.new_graph("verdicts", "feedback")
    exits: dict[str, str] = {}
    for step in spec.steps:
        note = None
        if step.prompt is None and step.output_schema is None:
            note = feedback_note
        sink = step.name not in sources or step.name in ends_at
        node = CustomStep(ctx, step, sink=sink, variables=feedback_variables, extra_prompt=note)
        exits[step.name] = add_step(graph, node)
    conditional_ends = [
        e
        for e in edges
        if e.branches and SPEC_END in {e.default or SPEC_END, *(b.to for b in e.branches)}
    ]
    if conditional_ends:
        add_node(graph, finish, finish_node)
        graph.add_edge(finish, END)
    graph.add_edge(START, spec.graph.entry)
    for edge in edges:
        source = exits[edge.source]
        if edge.to is not None:
            graph.add_edge(source, END if edge.to == SPEC_END else edge.to)
            continue
        targets = {b.to for b in edge.branches} | {edge.default or SPEC_END}
        path = [*sorted({finish if t == SPEC_END else t for t in targets}), END]
        add_router(graph, source, edge_router(edge, finish), path)
    for name in names:
        if name not in sources:
            graph.add_edge(exits[name], END)
    return graph
