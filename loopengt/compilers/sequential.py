"""sequential: steps in dependency order; steps whose dependencies are met run in the same
superstep. A gated step loops back to itself until its gate passes."""

from __future__ import annotations

from langgraph.graph import END, START

from loopengt.graph.context import CompileContext, step_gate
from loopengt.graph.nodes import StepNode, gate_router, noop, passed_node, retry_policy
from loopengt.graph.state import Graph, add_node, add_router, new_graph


def add_step(graph: Graph, ctx: CompileContext, node: StepNode) -> str:
    """Add a step node (and its gate loop); returns the node its successors follow."""
    name = node.step.name
    add_node(graph, name, node, retry_policy=retry_policy(ctx))
    if step_gate(ctx.spec, node.step) is None:
        return name
    done = passed_node(name)
    add_node(graph, done, noop)
    add_router(graph, name, gate_router(name, done), [name, done, END])
    return done


def wire(graph: Graph, step: str, deps: list[str]) -> None:
    """Edges into a step: from START, from its one dependency, or a waiting edge that fires
    once every dependency has finished."""
    if not deps:
        graph.add_edge(START, step)
    else:
        graph.add_edge(deps[0] if len(deps) == 1 else deps, step)


def build(ctx: CompileContext) -> Graph:
    graph = new_graph(ctx.channels())
    steps = ctx.spec.steps
    has_dependants = {dep for step in steps for dep in step.requires}
    exits = {}
    for step in steps:
        sink = step.name not in has_dependants
        exits[step.name] = add_step(graph, ctx, StepNode(ctx, step, sink=sink))
    for step in steps:
        wire(graph, step.name, [exits[d] for d in step.requires])
        if step.name not in has_dependants:
            graph.add_edge(exits[step.name], END)
    return graph
