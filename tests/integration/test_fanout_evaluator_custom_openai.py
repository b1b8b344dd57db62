"""parallel_fan_out, evaluator_optimizer and custom specs through the real ChatOpenAI client
against the scripted OpenAI-compatible server: concurrent branches and mapped items answered
by a responder, JSON-schema structured verdicts, repair of a malformed verdict, usage."""

from __future__ import annotations

import re
import textwrap
from typing import Any

from loopengt.compile import compile_spec
from loopengt.compilers.evaluator_optimizer import VERDICT_SCHEMA
from loopengt.spec import load_spec_text
from tests.integration.clients import chat_model
from tests.support.openai_server import (
    Delayed,
    JsonReply,
    Reply,
    ScriptedOpenAIServer,
    last_user_text,
)


def spec(text: str) -> Any:
    return load_spec_text(textwrap.dedent(text))


def user_text(request: dict[str, Any]) -> str:
    """All user messages of a request (a structured call adds the schema request last)."""
    return "\n".join(str(m["content"]) for m in request["messages"] if m["role"] == "user")


FAN_OUT = """
    name: compare
    goal: Compare two sources and map over pages.
    pattern: parallel_fan_out
    inputs: {pages: {description: Pages to summarise.}}
    agents: [{name: reader}, {name: editor, instructions: You merge notes.}]
    steps:
      - {name: left, agent: reader, description: Read the left source.}
      - {name: right, agent: reader, description: Read the right source.}
      - {name: pages, agent: reader, prompt: "Summarise page {{item}}."}
      - {name: merge, agent: editor, description: Merge everything.}
    fan_out:
      branches: [left, right]
      map_step: pages
      map_over: input.pages
      aggregator: merge
      max_concurrency: 4
    policy: {max_turns: 10}
"""
PAGE = re.compile(r"Summarise page (\w+)\.")
TASK = re.compile(r"Your task \((\w+)\)")


def fan_out_responder(request: dict[str, Any]) -> Reply:
    """Concurrent requests arrive in any order, so the reply depends on the request."""
    text = last_user_text(request)
    page = PAGE.search(text)
    if page:  # the first page answers last: results must still come back in input order
        delay = {"one": 0.3, "two": 0.1}.get(page.group(1), 0.0)
        return Delayed(f"summary of {page.group(1)}", delay)
    task = TASK.search(text)
    return f"{task.group(1) if task else 'unknown'} notes"


def test_fan_out_branches_and_map_through_chat_openai() -> None:
    with ScriptedOpenAIServer(responder=fan_out_responder) as server:
        graph = compile_spec(spec(FAN_OUT), models=chat_model(server))
        state = graph.invoke({"input": {"pages": ["one", "two", "three"]}})
        requests = server.requests

    assert state["status"] == "completed" and state.get("stop_reason") is None
    assert state["outputs"]["left"] == "left notes"
    assert state["outputs"]["right"] == "right notes"
    assert state["outputs"]["pages"] == [
        "summary of one",
        "summary of two",
        "summary of three",
    ]
    assert state["outputs"]["merge"] == "merge notes"
    assert len(requests) == 6 and state["turns"] == 6
    assert state["usage"]["model_calls"] == 6 and state["usage"]["total_tokens"] > 0
    merge = user_text(requests[-1])  # the aggregator runs last, after the join
    assert requests[-1]["messages"][0] == {"role": "system", "content": "You merge notes."}
    at = [merge.index(s) for s in ("'left':", "'right':", "'pages':")]
    assert at == sorted(at)
    assert '["summary of one", "summary of two", "summary of three"]' in merge


EVALUATOR = """
    name: haiku
    goal: Write a haiku about owls.
    pattern: evaluator_optimizer
    agents:
      - {name: poet, instructions: You write haiku.}
      - {name: critic, instructions: You judge haiku.}
    steps:
      - {name: write, agent: poet, description: Write the haiku.}
      - {name: judge, agent: critic, depends_on: [write], prompt: "Is this a haiku? {{write}}"}
    evaluator: {generator: write, evaluator: judge, max_iterations: 3}
    policy: {max_turns: 10}
"""


def test_evaluator_loop_with_json_schema_verdicts() -> None:
    replies: list[Reply] = [
        "owls owls owls",
        JsonReply({"pass": False, "score": 0.2, "feedback": "Use 5-7-5 syllables."}),
        "Silent wings at dusk / the old owl counts the stars / one by one they fade",
        "this is not JSON",  # repaired on the next request
        JsonReply({"pass": True, "score": 0.9, "feedback": "Lovely."}),
    ]
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(spec(EVALUATOR), models=chat_model(server))
        state = graph.invoke({"input": {}})
        requests = server.requests
        errors = server.errors

    assert errors == []
    assert state["status"] == "completed"
    assert state["outputs"]["write"].startswith("Silent wings at dusk")
    assert state["verdicts"]["judge"] == {"pass": True, "score": 0.9, "feedback": "Lovely."}
    assert state["outputs"]["judge"] == state["verdicts"]["judge"]
    assert state["turns"] == 4 and state["usage"]["model_calls"] == 5
    # generator requests: plain text; evaluator requests: JSON-schema response format
    assert "response_format" not in requests[0] and "response_format" not in requests[2]
    for judged in (requests[1], requests[3], requests[4]):
        fmt = judged["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["schema"] == VERDICT_SCHEMA
    assert "Is this a haiku? owls owls owls" in user_text(requests[1])
    assert "That reply was invalid" in user_text(requests[4])
    assert user_text(requests[2]).endswith(
        "Feedback on your previous attempt: Use 5-7-5 syllables."
    )


def test_evaluator_stops_at_max_iterations_keeping_the_last_draft() -> None:
    fail = JsonReply({"pass": False, "feedback": "No."})
    replies: list[Reply] = ["d1", fail, "d2", fail, "d3", fail]
    with ScriptedOpenAIServer(replies) as server:
        state = compile_spec(spec(EVALUATOR), models=chat_model(server)).invoke({"input": {}})
        count = server.request_count

    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("max_iterations: ")
    assert "in 3 iteration(s)" in state["stop_reason"]
    assert state["outputs"]["write"] == "d3" and count == 6


CUSTOM = """
    name: review-loop
    goal: Ship a short post.
    pattern: custom
    agents: [{name: author}, {name: reviewer}]
    steps:
      - {name: write, agent: author, description: Write the post.}
      - name: review
        agent: reviewer
        prompt: "Review: {{write}}"
        output_schema:
          type: object
          properties:
            pass: {type: boolean}
            feedback: {type: string, maxLength: 300}
          required: [pass, feedback]
      - {name: publish, agent: author, prompt: "Publish {{write}} ({{feedback}})."}
    graph:
      entry: write
      edges:
        - {from: write, to: review}
        - from: review
          branches:
            - {when: {verdict: pass}, to: publish}
            - {when: {counter: visits.write, op: ">=", value: 3}, to: END}
          default: write
        - {from: publish, to: END}
    policy: {max_turns: 10}
"""


def test_custom_graph_routes_on_a_structured_verdict() -> None:
    replies: list[Reply] = [
        "draft one",
        JsonReply({"pass": False, "feedback": "Too vague."}),
        "draft two",
        JsonReply({"pass": True, "feedback": "Ship it."}),
        "published!",
    ]
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(spec(CUSTOM), models=chat_model(server))
        updates = list(graph.stream({"input": {}}, stream_mode="updates"))
        requests = server.requests

    assert [name for chunk in updates for name in chunk] == [
        "write",
        "review",
        "write",
        "review",
        "publish",
    ]
    assert updates[-1]["publish"]["status"] == "completed"
    assert updates[3]["review"]["verdicts"] == {"review": {"pass": True, "feedback": "Ship it."}}
    assert requests[1]["response_format"]["type"] == "json_schema"
    assert user_text(requests[2]).endswith("Feedback on the previous attempt: Too vague.")
    assert "Review: draft two" in user_text(requests[3])
    assert last_user_text(requests[4]) == "Publish draft two (Ship it.)."
