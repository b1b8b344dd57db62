"""The sequential pattern with fake chat models: node order and supersteps, prompts,
structured outputs, function tools, per-agent models, and the async/stream entry points.
(Policy enforcement — limits, retries, gates, approvals — is in test_sequential_policy.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

from loopengt.compile import compile_spec
from loopengt.errors import UserInputError
from tests.compilers.helpers import fake, node_order, spec_of, step_echo, supersteps, tool_call

DIAMOND = """
    name: diamond
    goal: Write about owls.
    agents:
      - name: writer
        instructions: You write carefully.
    steps:
      - {name: a, description: Collect facts.}
      - {name: b, depends_on: [a], description: Outline the post.}
      - {name: c, depends_on: [a], description: Find a title.}
      - {name: d, depends_on: [b, c], description: Write the post.}
    policy: {max_turns: 10}
"""


def test_diamond_runs_b_and_c_in_one_superstep() -> None:
    graph = compile_spec(spec_of(DIAMOND), models=step_echo())

    assert supersteps(graph, {"input": {}}) == [{"a"}, {"b", "c"}, {"d"}]


def test_diamond_node_order_and_outputs() -> None:
    model = step_echo()
    graph = compile_spec(spec_of(DIAMOND), models=model)

    order = node_order(graph, {"input": {"topic": "owls"}})
    # b and c share a superstep, so they may finish in either order
    assert order[0] == "a" and set(order[1:3]) == {"b", "c"} and order[3:] == ["d"]
    state = graph.invoke({"input": {"topic": "owls"}})
    assert state["outputs"] == {"a": "a-done", "b": "b-done", "c": "c-done", "d": "d-done"}
    assert state["status"] == "completed"
    assert state.get("stop_reason") is None
    assert state["turns"] == 4
    assert state["usage"]["model_calls"] == 4


def test_default_prompt_has_goal_description_inputs_and_dependency_outputs() -> None:
    model = step_echo()
    graph = compile_spec(spec_of(DIAMOND), models=model)
    graph.invoke({"input": {"topic": "owls"}})

    last = model.received[-1]  # d runs last: it depends on everything
    assert isinstance(last[0], SystemMessage) and last[0].content == "You write carefully."
    assert isinstance(last[1], HumanMessage)
    prompt = str(last[1].content)
    assert prompt.startswith("Goal: Write about owls.\n\nYour task (d): Write the post.")
    assert 'Run input:\n{"topic": "owls"}' in prompt
    assert "Result of step 'b':\nb-done" in prompt
    assert "Result of step 'c':\nc-done" in prompt
    assert "Result of step 'a'" not in prompt  # only direct dependencies are shown
    first = str(model.received[0][1].content)
    assert "Result of step" not in first


def test_prompt_templates_are_rendered() -> None:
    spec = spec_of("""
        name: templated
        goal: Teach kids.
        inputs:
          topic: {description: What to write about.}
          note: {required: false}
        agents: [{name: w}]
        steps:
          - {name: facts, prompt: "List facts about {{input.topic}}."}
          - name: post
            depends_on: [facts]
            prompt: "For {{ goal }} use {{steps.facts}} / {{facts}} ({{input.note}})."
        policy: {max_turns: 5}
    """)
    model = fake("owls fly", "a post")
    graph = compile_spec(spec, models=model)

    state = graph.invoke({"input": {"topic": "owls"}})

    assert model.prompts() == [
        "List facts about owls.",
        "For Teach kids. use owls fly / owls fly ().",
    ]
    assert state["outputs"] == {"facts": "owls fly", "post": "a post"}


SCHEMA_SPEC = """
    name: structured
    goal: Plan.
    agents: [{name: planner}]
    steps:
      - name: plan
        output_schema:
          type: object
          properties:
            title: {type: string, maxLength: 50}
            parts: {type: integer}
          required: [title, parts]
    policy: {max_turns: 5}
"""


def test_output_schema_stores_the_parsed_object() -> None:
    graph = compile_spec(spec_of(SCHEMA_SPEC), models=fake('{"title": "Owls", "parts": 3}'))

    state = graph.invoke({"input": {}})

    assert state["outputs"] == {"plan": {"title": "Owls", "parts": 3}}
    assert state["status"] == "completed"


def test_output_schema_repairs_an_invalid_reply_once() -> None:
    model = fake("Sure! Here is the plan.", '```json\n{"title": "Owls", "parts": 2}\n```')
    graph = compile_spec(spec_of(SCHEMA_SPEC), models=model)

    state = graph.invoke({"input": {}})

    assert state["outputs"] == {"plan": {"title": "Owls", "parts": 2}}
    assert model.calls == 2
    assert "That reply was invalid" in model.prompts()[1]
    assert state["turns"] == 1  # the repair is part of the same turn
    assert state["usage"]["model_calls"] == 2


def test_output_schema_never_valid_fails_cleanly_with_the_raw_text() -> None:
    model = fake('{"title": "Owls"}', "still not it", "no JSON here, sorry")
    graph = compile_spec(spec_of(SCHEMA_SPEC), models=model)

    state = graph.invoke({"input": {}})

    assert state["status"] == "failed"
    assert state["stop_reason"].startswith("error: step 'plan': no valid structured output")
    assert "no JSON here, sorry" in state["stop_reason"]
    assert "plan" not in state.get("outputs", {})
    assert model.calls == 3


TOOL_SPEC = """
    name: tools
    goal: Compute.
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
      - {name: explode, kind: function, function: "tests.compilers.helpers:explode"}
    agents: [{name: calc, tools: [add, explode]}]
    steps: [{name: sum}]
    policy: {max_turns: 5}
"""


def test_function_tool_is_called_and_its_result_goes_back_to_the_model() -> None:
    model = fake(tool_call("add", {"a": 2, "b": 3}, "c1"), "The sum is 5.")
    graph = compile_spec(spec_of(TOOL_SPEC), models=model)

    state = graph.invoke({"input": {}})

    assert state["outputs"] == {"sum": "The sum is 5."}
    assert model.bound_tools == ["add", "explode"]
    assert model.calls == 2
    result = model.received[1][-1]
    assert isinstance(result, ToolMessage)
    assert (result.content, result.tool_call_id, result.status) == ("5", "c1", "success")
    # the tool exchange is recorded in the run's messages
    assert [type(m).__name__ for m in state["messages"]] == [
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert state["turns"] == 1


def test_a_tool_that_raises_gives_the_error_text_to_the_model() -> None:
    model = fake(tool_call("explode", {"text": "x"}, "c9"), "The tool failed; giving up politely.")
    graph = compile_spec(spec_of(TOOL_SPEC), models=model)

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"] == {"sum": "The tool failed; giving up politely."}
    result = model.received[1][-1]
    assert isinstance(result, ToolMessage)
    assert result.status == "error"
    assert result.content == "error: ValueError: cannot handle 'x'"


TWO_AGENTS = """
    name: team
    goal: Review.
    agents:
      - {name: author, instructions: You write.}
      - {name: critic, instructions: You criticise.}
    steps:
      - {name: draft, agent: author}
      - {name: review, agent: critic, depends_on: [draft]}
    policy: {max_turns: 5}
"""


def test_models_mapping_gives_each_agent_its_own_model() -> None:
    author, critic = fake("a draft"), fake("looks fine")
    graph = compile_spec(spec_of(TWO_AGENTS), models={"author": author, "critic": critic})

    state = graph.invoke({"input": {}})

    assert state["outputs"] == {"draft": "a draft", "review": "looks fine"}
    assert [m[0].content for m in author.received] == ["You write."]
    assert [m[0].content for m in critic.received] == ["You criticise."]
    assert "Result of step 'draft':\na draft" in critic.prompts()[0]


def test_models_mapping_missing_an_agent_fails_at_compile_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("LOOPENGT_MODEL", raising=False)
    monkeypatch.chdir(str(tmp_path))  # no .loopengt/config.toml to fall back on
    monkeypatch.setattr("loopengt.providers.local.local_model_available", lambda: False)
    with pytest.raises(UserInputError, match="agent 'critic'"):
        compile_spec(spec_of(TWO_AGENTS), models={"author": fake("x")})


def test_ainvoke_runs_the_same_graph() -> None:
    graph = compile_spec(spec_of(DIAMOND), models=step_echo())

    state = asyncio.run(graph.ainvoke({"input": {"topic": "owls"}}))

    assert state["outputs"]["d"] == "d-done"
    assert state["status"] == "completed"


def test_stream_values_ends_with_the_final_state() -> None:
    graph = compile_spec(spec_of(TWO_AGENTS), models=fake("a draft", "looks fine"))

    values = list(graph.stream({"input": {}}, stream_mode="values"))

    assert values[-1]["outputs"] == {"draft": "a draft", "review": "looks fine"}
    assert values[-1]["status"] == "completed"
    assert [sorted(v.get("outputs", {})) for v in values] == [[], ["draft"], ["draft", "review"]]


class ModelStarts(BaseCallbackHandler):
    """Which node each model call ran in, as the callbacks of the run config see it."""

    def __init__(self) -> None:
        self.nodes: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.nodes.append((kwargs.get("metadata") or {}).get("langgraph_node", "?"))


@pytest.mark.parametrize("timeout", ["", "step_timeout_seconds: 30"])
def test_model_calls_get_the_run_config_callbacks(timeout: str) -> None:
    """Model calls take the node's config from the context; under a step timeout they run
    in a thread, which must carry that context too."""
    spec = DIAMOND.replace("policy: {max_turns: 10}", f"policy: {{max_turns: 10, {timeout}}}")
    handler = ModelStarts()

    compile_spec(spec_of(spec), models=step_echo()).invoke({"input": {}}, {"callbacks": [handler]})

    assert sorted(handler.nodes) == ["a", "b", "c", "d"]
