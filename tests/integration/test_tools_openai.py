"""Issue 4, Done-when: an agent using a `function` tool, and one using the tools of a real MCP
stdio server (tests/support/mcp_server.py), both compiled with `compile_spec` and run through
the real ChatOpenAI client against the scripted OpenAI-compatible server. A tool that raises
(locally or server-side) gives the model the error text and the run still completes."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopengt.compile import compile_spec
from loopengt.spec import load_spec_text
from loopengt.tools import mcp_client as mcp_tools
from tests.integration.clients import chat_model
from tests.support.openai_server import Reply, ScriptedOpenAIServer, ToolCallReply

MCP_SERVER = Path(__file__).parents[1] / "support" / "mcp_server.py"

FUNCTION_SPEC = textwrap.dedent("""
    name: owl-sum
    goal: Add up owl sightings.
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
      - {name: explode, kind: function, function: "tests.compilers.helpers:explode"}
    agents:
      - {name: counter, instructions: You count with tools., tools: [add, explode]}
    steps:
      - {name: total, agent: counter, prompt: "Add 2 and 3."}
""")

MCP_SPEC = textwrap.dedent(f"""
    name: word-stats
    goal: Count words with an MCP tool.
    tools:
      - name: text
        kind: mcp
        description: Text utilities from a local MCP server.
        command: {json.dumps(sys.executable)}
        args: [{json.dumps(str(MCP_SERVER))}]
        include: [word_count, shout, fail]
    agents:
      - {{name: analyst, instructions: You analyse text with tools., tools: [text]}}
    steps:
      - {{name: count, agent: analyst, prompt: "How many words in 'the quick brown fox'?"}}
""")


@pytest.fixture(autouse=True)
def stop_mcp_servers() -> Iterator[None]:
    yield
    mcp_tools.close_all()  # what the run engine does at the end of a run


def run(spec_text: str, replies: list[Reply]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(load_spec_text(spec_text), models=chat_model(server))
        state = graph.invoke({"input": {}})
        assert server.errors == []
        return state, server.requests


def offered(request: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in request["tools"]]


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def test_function_tool_result_reaches_the_model() -> None:
    state, requests = run(FUNCTION_SPEC, [ToolCallReply("add", {"a": 2, "b": 3}), "It is 5."])

    assert state["status"] == "completed", state.get("stop_reason")
    assert state["outputs"] == {"total": "It is 5."}
    assert len(requests) == 2
    assert offered(requests[0]) == ["add", "explode"]
    add_schema = requests[0]["tools"][0]["function"]
    assert add_schema["description"] == "Add two integers."
    assert set(add_schema["parameters"]["properties"]) == {"a", "b"}
    [result] = tool_messages(requests[1])
    assert result["content"] == "5"


def test_mcp_tool_result_reaches_the_model() -> None:
    replies: list[Reply] = [
        ToolCallReply("word_count", {"text": "the quick brown fox"}),
        "There are 4 words.",
    ]
    state, requests = run(MCP_SPEC, replies)

    assert state["status"] == "completed", state.get("stop_reason")
    assert state["outputs"] == {"count": "There are 4 words."}
    assert len(requests) == 2
    assert offered(requests[0]) == ["word_count", "shout", "fail"]
    word_count = requests[0]["tools"][0]["function"]
    assert word_count["description"] == "Count the words in a text."
    assert word_count["parameters"]["properties"] == {"text": {"type": "string"}}
    assert word_count["parameters"]["required"] == ["text"]
    [call] = requests[1]["messages"][-2]["tool_calls"]
    [result] = tool_messages(requests[1])
    assert result == {"role": "tool", "content": "4", "tool_call_id": call["id"]}


def test_two_mcp_calls_in_one_step_use_one_server() -> None:
    replies: list[Reply] = [
        ToolCallReply("shout", {"text": "owls"}),
        ToolCallReply("word_count", {"text": "OWLS!"}),
        "Done: OWLS!",
    ]
    state, requests = run(MCP_SPEC, replies)

    assert state["outputs"] == {"count": "Done: OWLS!"}
    assert [m["content"] for m in tool_messages(requests[2])] == ["OWLS!", "1"]
    assert mcp_tools.registry.running() == 1


def test_a_raising_function_tool_gives_the_model_the_error_and_the_run_completes() -> None:
    replies: list[Reply] = [ToolCallReply("explode", {"text": "owls"}), "The tool failed."]
    state, requests = run(FUNCTION_SPEC, replies)

    assert state["status"] == "completed", state.get("stop_reason")
    assert state["outputs"] == {"total": "The tool failed."}
    [result] = tool_messages(requests[1])
    assert result["content"] == "error: ValueError: cannot handle 'owls'"


def test_a_server_side_mcp_error_gives_the_model_the_error_and_the_run_completes() -> None:
    replies: list[Reply] = [ToolCallReply("fail", {"reason": "no dictionary"}), "Sorry."]
    state, requests = run(MCP_SPEC, replies)

    assert state["status"] == "completed", state.get("stop_reason")
    assert state["outputs"] == {"count": "Sorry."}
    [result] = tool_messages(requests[1])
    assert result["content"] == (
        "error: ToolException: Error executing tool fail: failed on purpose: no dictionary"
    )


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_each_mcp_call_is_traced_once(mode: str) -> None:
    # issue 12: the adapter's inner tool inherited the node's callbacks, so 3 calls gave 6
    # tool_call events (an error twice, under two names)
    import asyncio

    from loopengt.tracing import RunEvents

    replies: list[Reply] = [
        ToolCallReply("shout", {"text": "owls"}),
        ToolCallReply("word_count", {"text": "OWLS!"}),
        ToolCallReply("fail", {"reason": "no dictionary"}),
        "Done.",
    ]
    events = RunEvents("r1", max_chars=1000, prices={})
    seen: list[Any] = []
    events.subscribe(seen.append)
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(load_spec_text(MCP_SPEC), models=chat_model(server))
        config: Any = {"callbacks": [events]}
        if mode == "invoke":
            graph.invoke({"input": {}}, config)
        else:
            asyncio.run(graph.ainvoke({"input": {}}, config))
    calls = [e.to_dict() for e in seen if e.kind == "tool_call"]
    assert [(c["name"], "error" in c) for c in calls] == [
        ("shout", False),
        ("word_count", False),
        ("fail", True),
    ], calls
    assert calls[0]["result"] == "OWLS!"
