"""supervisor_worker and handoff through the real ChatOpenAI client against the scripted
OpenAI-compatible server: JSON-schema routing, a worker's tool call, transfer tools, and the
wire format of a shared handoff history."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from loopengt.compile import compile_spec
from loopengt.spec import load_spec_text
from tests.integration.clients import chat_model
from tests.support.openai_server import JsonReply, Reply, ScriptedOpenAIServer, ToolCallReply

TEAM = """
    name: team
    goal: Compute a number for the report.
    pattern: supervisor_worker
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
    agents:
      - name: boss
        description: Leads the team.
      - name: researcher
        description: Does arithmetic.
        tools: [add]
      - name: writer
        description: Writes prose.
    steps:
      - name: notes
        agent: researcher
        prompt: "Do this: {{task}}"
    supervisor: {agent: boss, max_turns: 5}
    policy: {max_turns: 10}
"""

DESK = """
    name: desk
    goal: Answer the customer's question.
    pattern: handoff
    agents:
      - name: triage
        description: Routes customers.
      - name: billing
        description: Handles invoices.
    steps: []
    handoff: {entry: triage, max_handoffs: 2}
    policy: {max_turns: 5}
"""


def run(spec: str, server: ScriptedOpenAIServer) -> tuple[list[str], dict[str, Any]]:
    graph: Any = compile_spec(load_spec_text(textwrap.dedent(spec)), models=chat_model(server))
    order: list[str] = []
    state: dict[str, Any] = {}
    for mode, chunk in graph.stream({"input": {"n": 2}}, stream_mode=["updates", "values"]):
        if mode == "updates":
            order += list(chunk)
        else:
            state = chunk
    return order, state


def test_supervisor_routes_with_json_schema_and_worker_calls_a_tool() -> None:
    replies: list[Reply] = [
        JsonReply({"next": "researcher", "task": "add 2 and 40"}),
        ToolCallReply("add", {"a": 2, "b": 40}),
        "The sum is 42.",
        JsonReply({"next": "FINISH"}),
    ]
    with ScriptedOpenAIServer(replies) as server:
        order, state = run(TEAM, server)
        requests = server.requests
        assert server.errors == []

    assert order == ["boss", "researcher", "boss"]
    assert state["outputs"] == {"notes": "The sum is 42."}
    assert state["status"] == "completed"
    assert state["turns"] == 3
    assert state["usage"]["model_calls"] == 4
    assert state["usage"]["total_tokens"] > 0
    # routing asked for the provider's JSON-schema mode with the worker names
    fmt = requests[0]["response_format"]
    assert fmt["type"] == "json_schema"
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["next"]["enum"] == ["researcher", "writer"]  # none done yet
    later = requests[-1]["response_format"]["json_schema"]["schema"]
    assert later["properties"]["next"]["enum"] == ["writer", "FINISH", "researcher"]
    assert schema["properties"]["task"]["maxLength"] == 500
    # the worker got its task, was offered its tool, and saw the tool's result
    assert requests[1]["messages"][-1] == {"role": "user", "content": "Do this: add 2 and 40"}
    assert [t["function"]["name"] for t in requests[1]["tools"]] == ["add"]
    tool_message = requests[2]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "42"
    assert "The sum is 42." in json.dumps(requests[3]["messages"])


def test_supervisor_routing_repaired_then_failing_for_good() -> None:
    replies: list[Reply] = ["researcher, I guess", "still not json", "nope"]
    with ScriptedOpenAIServer(replies) as server:
        order, state = run(TEAM, server)
        requests = server.requests

    assert order == ["boss"]
    assert len(requests) == 3
    assert "That reply was invalid" in requests[1]["messages"][-1]["content"]
    assert state["status"] == "failed"
    assert state["stop_reason"].startswith("error: supervisor routing")
    assert "nope" in state["stop_reason"]


def test_handoff_transfer_tool_passes_task_and_context() -> None:
    replies: list[Reply] = [
        ToolCallReply("transfer_to_billing", {"task": "Refund invoice 7", "context": "Paid twice"}),
        "Refund issued.",
    ]
    with ScriptedOpenAIServer(replies) as server:
        order, state = run(DESK, server)
        requests = server.requests

    assert order == ["triage", "billing"]
    assert state["outputs"]["billing"] == "Refund issued."
    assert state["status"] == "completed"
    tools = requests[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["transfer_to_billing"]
    assert set(tools[0]["function"]["parameters"]["properties"]) == {"task", "context"}
    # the receiving agent gets a fresh conversation carrying the task and its context
    received = requests[1]["messages"]
    assert [m["role"] for m in received] == ["system", "user"]
    assert "Refund invoice 7" in received[1]["content"]
    assert "Paid twice" in received[1]["content"]


def test_shared_history_is_a_valid_openai_conversation() -> None:
    spec = DESK.replace("max_handoffs: 2}", "max_handoffs: 2, share_history: true}")
    replies: list[Reply] = [
        ToolCallReply("transfer_to_billing", {"task": "Refund invoice 7"}, content="One moment."),
        "Refund issued.",
    ]
    with ScriptedOpenAIServer(replies) as server:
        order, state = run(spec, server)
        requests = server.requests
        assert server.errors == []

    assert order == ["triage", "billing"]
    assert state["status"] == "completed"
    received = requests[1]["messages"]
    assert [m["role"] for m in received] == ["system", "user", "assistant", "tool", "user"]
    call_id = received[2]["tool_calls"][0]["id"]
    assert received[3]["tool_call_id"] == call_id
    assert received[2]["content"] == "One moment."
