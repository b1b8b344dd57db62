"""Each compiled graph carries the core channels plus only those its pattern and gates use,
and (under the tests' write check) a node that writes a key outside them fails loudly
instead of LangGraph dropping the write."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

import jsonschema
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, RemoveMessage
from langgraph.graph import END, START
from langgraph.graph.message import add_messages

from loopengt.compile import compile_spec
from loopengt.graph.state import (
    CHECK_WRITES_ENV,
    CORE_CHANNELS,
    GATE_CHANNELS,
    LoopState,
    add_node,
    append_messages,
    new_graph,
)
from loopengt.spec import load_spec
from tests.compilers.helpers import spec_of, step_echo

CHAIN = """
    name: chain
    goal: Check channels.
    agents: [{name: worker}]
    policy: {max_turns: 10}
    steps:
      - {name: s1, description: One.}
      - {name: s2, depends_on: [s1], description: Two.}
"""


EXAMPLES = Path(__file__).parents[2] / "examples"


def state_keys(graph: Any) -> set[str]:
    """The state's channels, without LangGraph's own (node triggers, joins, branches)."""
    return {k for k in graph.channels if k in get_type_hints(LoopState)}


def test_a_chain_without_gates_has_only_the_core_channels() -> None:
    graph = compile_spec(spec_of(CHAIN), models=step_echo())

    assert state_keys(graph) == set(CORE_CHANNELS)
    result = graph.invoke({"input": {}})
    assert set(result["outputs"]) == {"s1", "s2"}
    assert result["turns"] == 2 and result["visits"] == {"s1": 1, "s2": 1}


def test_a_gate_adds_the_gate_channels() -> None:
    gated = CHAIN + "      - {name: s3, depends_on: [s2], gate: {kind: regex, pattern: '.'}}\n"

    graph = compile_spec(spec_of(gated), models=step_echo())

    assert set(GATE_CHANNELS) <= state_keys(graph)
    assert graph.invoke({"input": {}})["gates"][0]["passed"] is True


def test_a_total_time_limit_adds_started_at() -> None:
    timed = CHAIN.replace("max_turns: 10}", "max_turns: 10, max_total_time_seconds: 60}")

    graph = compile_spec(spec_of(timed), models=step_echo())

    assert "started_at" in state_keys(graph)
    assert "started_at" not in state_keys(compile_spec(spec_of(CHAIN), models=step_echo()))
    assert graph.invoke({"input": {}})["started_at"] > 0


@pytest.mark.parametrize(
    ("example", "own"),
    [
        ("parallel-review.yaml", {"mapped"}),
        ("review-loop.yaml", {"verdicts", "feedback"}),
        ("supervisor-team.yaml", {"next_worker", "task", "feedback"}),
        ("support-handoff.yaml", {"active_agent", "task"}),
        ("custom-draft-check.yaml", {"verdicts", "feedback"}),
    ],
)
def test_each_pattern_adds_only_its_own_channels(example: str, own: set[str]) -> None:
    spec = load_spec(EXAMPLES / example)
    gates = set(GATE_CHANNELS) if any(s.gate for s in spec.steps) or spec.policy.gates else set()
    timed = {"started_at"} if spec.policy.max_total_time_seconds else set()

    graph = compile_spec(spec, models=step_echo(), check_models=False)

    assert state_keys(graph) == set(CORE_CHANNELS) | own | gates | timed


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_compiled_graph_has_json_schemas_for_studio(example: str) -> None:
    graph = compile_spec(load_spec(EXAMPLES / example), models=step_echo(), check_models=False)

    inputs, outputs = graph.get_input_jsonschema(), graph.get_output_jsonschema()

    assert {"input", "outputs", "stop_reason"} <= set(inputs["properties"])
    assert outputs["properties"]["stop_reason"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    jsonschema.Draft202012Validator.check_schema(outputs)


def test_a_write_outside_the_channels_fails_under_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CHECK_WRITES_ENV, "1")
    graph = new_graph(frozenset())
    add_node(graph, "typo", lambda state: {"outputs": {"typo": 1}, "verdict": "x"})
    graph.add_edge(START, "typo")
    graph.add_edge("typo", END)

    with pytest.raises(AssertionError, match=r"node 'typo' wrote \['verdict'\]: not channels"):
        graph.compile().invoke({"input": {}})


def test_without_the_check_nodes_are_added_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECK_WRITES_ENV, raising=False)
    graph = new_graph(frozenset())

    def node(state: dict[str, Any]) -> dict[str, Any]:
        return {"outputs": {"n": 1}}

    add_node(graph, "n", node)

    assert graph.nodes["n"].runnable.func is node  # type: ignore[attr-defined]


LEFT = [AIMessage("one", id="a0"), AIMessage("two", id="a1")]


@pytest.mark.parametrize(
    "right",
    [
        [AIMessage("three", id="b")],  # the shortcut: a new message with an id
        [HumanMessage("no id yet")],
        [AIMessage("replaces two", id="a1")],
        [RemoveMessage(id="a0")],
        [AIMessageChunk("a chunk", id="c1")],
        [AIMessage("x", id="d"), AIMessage("y", id="d")],
        [("user", "a tuple")],
    ],
)
def test_append_messages_gives_what_add_messages_gives(right: list[Any]) -> None:
    def shape(messages: list[Any]) -> list[tuple[str, Any, bool]]:
        return [(type(m).__name__, m.content, bool(m.id)) for m in messages]

    ours, theirs = append_messages(list(LEFT), right), add_messages(list(LEFT), right)

    assert shape(ours) == shape(theirs)
    assert [m.id for m in ours if m.id in ("a0", "a1", "b", "c1", "d")] == [
        m.id for m in theirs if m.id in ("a0", "a1", "b", "c1", "d")
    ]
