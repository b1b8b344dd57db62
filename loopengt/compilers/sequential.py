"""sequential: steps in dependency order; steps whose dependencies are met run in the same
superstep. A gated step loops back to itself until its gate passes."""

from __future__ import annotations

from langgraph.graph import END

from loopengt.graph.context import CompileContext
from loopengt.graph.state import Graph
from loopengt.graph.step import StepTurn
from loopengt.graph.wiring import add_step, wire


def build(ctx: CompileContext) -> Graph:
    graph = ctx.new_graph()
    steps = ctx.spec.steps
    has_dependants = {dep for step in steps for dep in step.requires}
    exits = {}
    for step in steps:
        sink = step.name not in has_dependants
        exits[step.name] = add_step(graph, StepTurn(ctx, step, sink=sink))
    for step in steps:
        wire(graph, step.name, [exits[d] for d in step.requires])
        if step.name not in has_dependants:
            graph.add_edge(exits[step.name], END)
    return graph
