"""How the patterns put turns into a graph: a turn as a node, a step with its gate loop,
and the edges into a step from its dependencies."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START

from loopengt.graph.gates import gate_router, passed_node
from loopengt.graph.state import Graph, add_node, add_router
from loopengt.graph.step import StepTurn
from loopengt.graph.turn import AgentTurn


def add_turn(graph: Graph, turn: AgentTurn, **kwargs: Any) -> None:
    """An agent turn as a node, with the metadata callbacks see (its agent, its step)."""
    add_node(graph, turn.node, turn, metadata=turn.metadata, **kwargs)


def add_step(graph: Graph, turn: StepTurn) -> str:
    """A step's node and, when it is gated, its gate loop: the step runs again while its
    gate asks for another attempt. Returns the node its successors follow."""
    add_turn(graph, turn)
    if turn.gate is None:
        return turn.node
    done = passed_node(turn.node)
    add_node(graph, done, noop)
    add_router(
        graph, turn.node, gate_router(turn.node, turn.step.name, done), [turn.node, done, END]
    )
    return done


def noop(state: Any) -> dict[str, Any]:
    return {}


def wire(graph: Graph, step: str, deps: list[str]) -> None:
    """Edges into a step: from START, from its one dependency, or a waiting edge that fires
    once every dependency has finished."""
    if not deps:
        graph.add_edge(START, step)
    else:
        graph.add_edge(deps[0] if len(deps) == 1 else deps, step)
