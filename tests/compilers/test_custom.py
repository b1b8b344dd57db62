"""The custom pattern with fake chat models: entry, plain and conditional edges, every
condition kind (output_contains, verdict, counter, verifier), defaults, END, feedback from
verdicts, and the stop checks of routers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopengt.compile import compile_spec
from loopengt.errors import UserInputError
from loopengt.spec.models import LoopSpec
from tests.compilers.helpers import fake, node_order, spec_of


def is_short(output: Any, step: str) -> tuple[bool, str]:
    """A verifier a spec names as tests.compilers.test_custom:is_short."""
    return len(str(output)) <= 5, f"{step} output is too long"


def custom(edges: str, *, steps: str = "", policy: str = "{max_turns: 10}") -> LoopSpec:
    steps = (
        steps
        or """
          - {name: write, prompt: "Write."}
          - {name: review, prompt: "Review {{write}}."}
          - {name: publish, prompt: "Publish."}"""
    )
    return spec_of(f"""
        name: flow
        goal: Ship a post.
        pattern: custom
        agents: [{{name: w}}]
        steps:{steps}
        graph:
          entry: write
          edges:
{edges}
        policy: {policy}
    """)


CONTAINS = """
            - {from: write, to: review}
            - from: review
              branches:
                - {when: {output_contains: APPROVED}, to: publish}
              default: write
            - {from: publish, to: END}"""


def test_output_contains_routes_back_until_approved() -> None:
    replies = ["draft 1", "needs work", "draft 2", "APPROVED", "done"]
    graph = compile_spec(custom(CONTAINS), models=fake(*replies))

    order = node_order(graph, {"input": {}})
    assert order == ["write", "review", "write", "review", "publish"]
    assert "finish" not in graph.get_graph().nodes  # no conditional route reaches END
    model = fake(*replies)
    state = compile_spec(custom(CONTAINS), models=model).invoke({"input": {}})
    assert state["outputs"] == {"write": "draft 2", "review": "APPROVED", "publish": "done"}
    assert state["status"] == "completed" and state.get("stop_reason") is None
    assert model.prompts()[3] == "Review draft 2."


def test_output_contains_of_another_step_and_default_end_finishes_the_run() -> None:
    edges = """
            - {from: write, to: review}
            - from: review
              branches:
                - {when: {output_contains: "draft", step: write}, to: publish}"""
    graph = compile_spec(custom(edges), models=fake("a draft", "ok", "done"))

    assert node_order(graph, {"input": {}}) == ["write", "review", "publish"]
    graph = compile_spec(custom(edges), models=fake("no", "ok"))
    assert node_order(graph, {"input": {}}) == ["write", "review", "finish"]
    state = compile_spec(custom(edges), models=fake("no", "ok")).invoke({"input": {}})
    assert state["status"] == "completed"


VERDICT_STEPS = """
          - {name: write, description: Write the post.}
          - name: review
            prompt: "Review {{write}}."
            output_schema:
              type: object
              properties:
                pass: {type: boolean}
                feedback: {type: string, maxLength: 200}
              required: [pass, feedback]
          - {name: publish, prompt: "Publish {{write}}. Notes: {{feedback}}"}"""
VERDICT_EDGES = """
            - {from: write, to: review}
            - from: review
              branches:
                - {when: {verdict: fail}, to: write}
                - {when: {verdict: pass}, to: publish}"""


def verdict(passed: bool, feedback: str) -> str:
    return json.dumps({"pass": passed, "feedback": feedback})


def test_verdict_routes_and_its_feedback_reaches_the_next_attempt() -> None:
    replies = ["d1", verdict(False, "add a title"), "d2", verdict(True, "nice"), "published"]
    spec = custom(VERDICT_EDGES, steps=VERDICT_STEPS)
    graph = compile_spec(spec, models=fake(*replies))
    order = node_order(graph, {"input": {}})
    assert order == ["write", "review", "write", "review", "publish"]

    model = fake(*replies)
    state = compile_spec(spec, models=model).invoke({"input": {}})
    assert state["verdicts"] == {"review": {"pass": True, "feedback": "nice"}}
    assert state["status"] == "completed"
    prompts = model.prompts()
    assert "Feedback on the previous attempt" not in prompts[0]
    assert prompts[2].endswith("Feedback on the previous attempt: add a title")
    assert prompts[4] == "Publish d2. Notes: nice"  # {{feedback}}: the latest verdict's


def test_verdict_condition_reads_another_steps_verdict() -> None:
    edges = """
            - {from: write, to: review}
            - {from: review, to: publish}
            - from: publish
              branches:
                - {when: {verdict: fail, step: review}, to: write}"""
    replies = ["d1", verdict(False, "x"), "p1", "d2", verdict(True, "y"), "p2"]
    graph = compile_spec(custom(edges, steps=VERDICT_STEPS), models=fake(*replies))

    assert node_order(graph, {"input": {}}) == [
        "write",
        "review",
        "publish",
        "write",
        "review",
        "publish",
        "finish",
    ]


COUNTER = """
            - from: write
              branches:
                - {when: {counter: visits.write, op: "<", value: 3}, to: write}
              default: publish"""


def test_counter_on_visits_loops_a_fixed_number_of_times() -> None:
    graph = compile_spec(custom(COUNTER), models=fake("a", "b", "c", "p"))

    assert node_order(graph, {"input": {}}) == ["write", "write", "write", "publish"]
    state = compile_spec(custom(COUNTER), models=fake("a", "b", "c", "p")).invoke({"input": {}})
    assert state["outputs"] == {"write": "c", "publish": "p"}
    assert state["status"] == "completed"  # publish has no outgoing edge: it ends the run


def test_counter_on_turns() -> None:
    edges = """
            - from: write
              branches:
                - {when: {counter: turns, op: ">=", value: 2}, to: END}
              default: write"""
    graph = compile_spec(custom(edges), models=fake("a", "b", "c"))

    assert node_order(graph, {"input": {}}) == ["write", "write", "finish"]


def test_verifier_condition_on_the_source_output() -> None:
    edges = """
            - from: write
              branches:
                - {when: {verifier: "tests.compilers.test_custom:is_short"}, to: publish}
              default: write"""
    replies = ["far too long", "short", "p"]
    graph = compile_spec(custom(edges), models=fake(*replies))

    assert node_order(graph, {"input": {}}) == ["write", "write", "publish"]


def test_the_finish_node_steps_aside_for_a_step_named_finish() -> None:
    steps = """
          - {name: write, prompt: "Write."}
          - {name: finish, prompt: "Finish."}"""
    edges = """
            - from: write
              branches:
                - {when: {output_contains: "more"}, to: finish}"""
    graph = compile_spec(custom(edges, steps=steps), models=fake("done", "x"))

    assert node_order(graph, {"input": {}}) == ["write", "finish_"]
    graph = compile_spec(custom(edges, steps=steps), models=fake("more", "x"))
    assert node_order(graph, {"input": {}}) == ["write", "finish"]


def test_unknown_verifier_fails_at_compile_time() -> None:
    edges = """
            - from: write
              branches:
                - {when: {verifier: "tests.compilers.test_custom:nothing_here"}, to: publish}"""
    with pytest.raises(UserInputError, match="cannot be imported"):
        compile_spec(custom(edges), models=fake())


def test_first_matching_branch_wins() -> None:
    edges = """
            - from: write
              branches:
                - {when: {output_contains: "b"}, to: review}
                - {when: {output_contains: "a"}, to: publish}"""
    graph = compile_spec(custom(edges), models=fake("ab", "r"))

    assert node_order(graph, {"input": {}}) == ["write", "review"]


def test_plain_edges_and_a_node_without_edges_ends_the_run() -> None:
    edges = """
            - {from: write, to: review}
            - {from: write, to: publish}"""
    model = fake("w", "x", "y")
    graph = compile_spec(custom(edges), models=model)

    order = node_order(graph, {"input": {}})
    assert order[0] == "write" and set(order[1:]) == {"review", "publish"}
    state = compile_spec(custom(edges), models=fake("w", "x", "y")).invoke({"input": {}})
    assert state["status"] == "completed" and set(state["outputs"]) == {
        "write",
        "review",
        "publish",
    }


def test_a_router_goes_to_end_once_a_limit_stopped_the_run() -> None:
    edges = """
            - from: write
              branches:
                - {when: {output_contains: "never"}, to: publish}
              default: write"""
    graph = compile_spec(custom(edges, policy="{max_turns: 3}"), models=fake("a", "b", "c"))

    assert node_order(graph, {"input": {}}) == ["write", "write", "write", "write"]
    state = compile_spec(custom(edges, policy="{max_turns: 3}"), models=fake("a", "b", "c")).invoke(
        {"input": {}}
    )
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 3 turns"
    assert state["outputs"]["write"] == "c"


def test_gated_node_loops_on_its_gate_before_its_edges() -> None:
    steps = """
          - {name: write, prompt: "Write.", gate: {kind: regex, pattern: "^OK"}}
          - {name: review, prompt: "Review {{write}}."}
          - {name: publish, prompt: "Publish."}"""
    edges = """
            - {from: write, to: review}
            - {from: review, to: END}"""
    graph = compile_spec(custom(edges, steps=steps), models=fake("bad", "OK w", "r"))

    assert node_order(graph, {"input": {}}) == ["write", "write", "write__passed", "review"]


def test_mermaid_shows_the_declared_edges() -> None:
    mermaid = compile_spec(custom(CONTAINS), models=fake()).get_graph().draw_mermaid()

    assert "__start__ --> write;" in mermaid
    assert "write --> review;" in mermaid
    assert "review -.-> publish;" in mermaid
    assert "review -.-> write;" in mermaid
    assert "publish --> __end__;" in mermaid
