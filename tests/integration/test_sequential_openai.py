"""A sequential spec through the real ChatOpenAI client against the scripted
OpenAI-compatible server: structured output, a function tool and usage accounting."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from loopengt.compile import compile_spec
from loopengt.spec import load_spec_text
from tests.integration.clients import chat_model
from tests.support.openai_server import (
    ErrorReply,
    JsonReply,
    Reply,
    ScriptedOpenAIServer,
    ToolCallReply,
)

SPEC = textwrap.dedent("""
    name: owl-report
    goal: Report how many owls were counted.
    inputs:
      site: {description: Where the owls were counted.}
    tools:
      - name: add
        kind: function
        function: "tests.compilers.helpers:add"
        description: Add two integers.
    agents:
      - {name: planner, instructions: You plan reports.}
      - {name: counter, instructions: You count with tools., tools: [add]}
      - {name: writer, instructions: You write one sentence.}
    steps:
      - name: plan
        agent: planner
        prompt: "Plan a report for {{input.site}}."
        output_schema:
          type: object
          properties:
            title: {type: string, maxLength: 80}
            sightings: {type: array, items: {type: integer}}
          required: [title, sightings]
      - name: total
        agent: counter
        depends_on: [plan]
        prompt: "Add up {{plan.sightings}} with the add tool."
      - name: report
        agent: writer
        depends_on: [plan, total]
        prompt: "Write '{{plan.title}}' saying: {{total}}"
    policy: {max_turns: 6}
""")


def roles(request: dict[str, Any]) -> list[str]:
    return [m["role"] for m in request["messages"]]


def owl_report_replies() -> list[Reply]:
    """The server's replies for SPEC: the plan, the tool call and its answer, the report."""
    return [
        JsonReply({"title": "Owls at Elm Wood", "sightings": [2, 3]}),
        ToolCallReply("add", {"a": 2, "b": 3}),
        "5 owls in total.",
        "Owls at Elm Wood: 5 owls were counted.",
    ]


def test_three_steps_with_structured_output_and_a_tool() -> None:
    with ScriptedOpenAIServer(owl_report_replies()) as server:
        graph = compile_spec(load_spec_text(SPEC), models=chat_model(server))
        state = graph.invoke({"input": {"site": "Elm Wood"}})
        requests = server.requests
        assert server.errors == []

    assert state["status"] == "completed", state.get("stop_reason")
    assert state["outputs"] == {
        "plan": {"title": "Owls at Elm Wood", "sightings": [2, 3]},
        "total": "5 owls in total.",
        "report": "Owls at Elm Wood: 5 owls were counted.",
    }
    assert state["turns"] == 3
    assert state["usage"]["model_calls"] == 4
    assert state["usage"]["input_tokens"] > 0
    assert state["usage"]["output_tokens"] > 0
    assert state["usage"]["total_tokens"] == (
        state["usage"]["input_tokens"] + state["usage"]["output_tokens"]
    )

    assert len(requests) == 4
    plan, tool_call, tool_result, report = requests
    # the structured step asks for the provider's JSON-schema mode, with the spec's schema
    response_format = plan["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["required"] == ["title", "sightings"]
    assert plan["messages"][0] == {"role": "system", "content": "You plan reports."}
    assert plan["messages"][1]["content"] == "Plan a report for Elm Wood."
    assert "tools" not in plan

    # the tool step offers the tool, then sends its result back
    assert "response_format" not in tool_call
    assert [t["function"]["name"] for t in tool_call["tools"]] == ["add"]
    assert tool_call["messages"][1]["content"] == "Add up [2, 3] with the add tool."
    assert roles(tool_result) == ["system", "user", "assistant", "tool"]
    sent_call = tool_result["messages"][2]["tool_calls"][0]
    assert sent_call["function"]["name"] == "add"
    assert json.loads(sent_call["function"]["arguments"]) == {"a": 2, "b": 3}
    assert tool_result["messages"][3] == {
        "role": "tool",
        "content": "5",
        "tool_call_id": sent_call["id"],
    }

    assert "tools" not in report and "response_format" not in report
    assert report["messages"][1]["content"] == "Write 'Owls at Elm Wood' saying: 5 owls in total."


def test_server_error_is_retried_then_the_run_completes() -> None:
    spec = SPEC.replace(
        "policy: {max_turns: 6}", "policy: {max_turns: 6, retry: {backoff_seconds: 0}}"
    )
    replies: list[Reply] = [
        ErrorReply(500, "overloaded"),
        JsonReply({"title": "T", "sightings": [1]}),
        "1 owl.",
        "T: 1 owl.",
    ]
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(load_spec_text(spec), models=chat_model(server))
        state = graph.invoke({"input": {"site": "Elm Wood"}})

    assert state["status"] == "completed", state.get("stop_reason")
    assert state["outputs"]["report"] == "T: 1 owl."
    assert server.request_count == 4
