"""Record a 3-step run through the real ChatOpenAI client against the scripted
OpenAI-compatible server, stop the server, replay with no model configured: same outputs
and usage, zero HTTP requests. A changed spec gives the mismatch error naming the step."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from loopengt.compile import compile_spec
from loopengt.spec import load_spec_text
from tests.integration.clients import chat_model
from tests.integration.test_sequential_openai import SPEC as OWL_REPORT
from tests.integration.test_sequential_openai import owl_report_replies
from tests.support.openai_server import ScriptedOpenAIServer

# the owl report of test_sequential_openai, its model named in the spec: replay must not
# need that model configured
SPEC = OWL_REPORT.replace("inputs:", 'defaults: {model: "openai:test-model"}\ninputs:', 1)
INPUT = {"input": {"site": "Elm Wood"}}


@pytest.fixture
def no_model_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOOPENGT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .loopengt/config.toml either


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_record_stop_the_server_and_replay_with_no_model(
    tmp_path: Path, no_model_configured: None
) -> None:
    path = tmp_path / "owl-report.yaml"
    with ScriptedOpenAIServer(owl_report_replies()) as server:
        recorded = compile_spec(
            load_spec_text(SPEC), models=chat_model(server), record=path
        ).invoke(INPUT)
        assert server.errors == []
        port = server.port
    requests_at_stop = server.request_count
    assert requests_at_stop == 4
    assert recorded["status"] == "completed", recorded.get("stop_reason")

    calls = yaml.safe_load(path.read_text())["calls"]
    assert [(c["step"], c["call"]) for c in calls] == [
        ("plan", 1),
        ("total", 1),
        ("total", 2),
        ("report", 1),
    ]
    # what the client sent: the JSON-schema response format and the tool's schema
    assert calls[0]["request"]["response_format"]["type"] == "json_schema"
    assert calls[1]["request"]["tools"][0]["name"] == "add"
    assert calls[1]["response"]["tool_calls"][0]["args"] == {"a": 2, "b": 3}
    assert all(c["response"]["usage_metadata"]["total_tokens"] > 0 for c in calls)

    # replay: the spec names openai:test-model, yet no key or base_url is configured
    replayed = compile_spec(load_spec_text(SPEC), replay=path).invoke(INPUT)

    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert (
        replayed["outputs"]
        == recorded["outputs"]
        == {
            "plan": {"title": "Owls at Elm Wood", "sightings": [2, 3]},
            "total": "5 owls in total.",
            "report": "Owls at Elm Wood: 5 owls were counted.",
        }
    )
    assert replayed["usage"] == recorded["usage"]
    assert replayed["usage"]["input_tokens"] > 0 and replayed["turns"] == 3
    assert server.request_count == requests_at_stop  # zero HTTP requests
    assert refuses_connections(port)  # and nothing was listening anyway

    # one step's prompt changed: the replay fails that step with the mismatch error
    changed = SPEC.replace("Write '{{plan.title}}' saying:", "Write '{{plan.title}}' with:")
    state = compile_spec(load_spec_text(changed), replay=path).invoke(INPUT)

    assert state["status"] == "failed"
    reason = state["stop_reason"]
    assert "step 'report' call 1 does not match the cassette (message 2 (user) content " in reason
    assert reason.endswith("re-record with --record")
    assert state["outputs"]["total"] == "5 owls in total."
    assert server.request_count == requests_at_stop


TIMED = """
name: timed
goal: Answer within a second.
defaults: {model: "openai:test-model"}
agents:
  - {name: quick, instructions: You answer fast.}
steps:
  - {name: answer, prompt: "answer"}
policy:
  step_timeout_seconds: 0.5
  retry: {attempts: 2, backoff_seconds: 0.01, max_backoff_seconds: 0.01}
"""


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_a_reply_that_came_after_the_step_timeout_is_not_recorded(
    tmp_path: Path, no_model_configured: None, mode: str
) -> None:
    # issue 12: the abandoned reply was recorded, so the replay answered the retry with it
    import asyncio
    import time

    from tests.support.openai_server import Delayed

    path = tmp_path / "timed.yaml"
    with ScriptedOpenAIServer([Delayed("too late", 1.0), "in time"]) as server:
        graph = compile_spec(load_spec_text(TIMED), models=chat_model(server), record=path)
        if mode == "invoke":
            recorded = graph.invoke({"input": {}})
        else:
            recorded = asyncio.run(graph.ainvoke({"input": {}}))
        time.sleep(1.0)  # the abandoned reply arrives meanwhile
        assert server.request_count == 2
    assert recorded["outputs"] == {"answer": "in time"}
    calls = yaml.safe_load(path.read_text())["calls"]
    assert [c["response"]["content"] for c in calls] == ["in time"]

    replayed = compile_spec(load_spec_text(TIMED), replay=path).invoke({"input": {}})
    assert replayed["outputs"] == {"answer": "in time"}


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_recording_a_tool_using_step_traces_each_model_call_once(
    tmp_path: Path, no_model_configured: None, mode: str
) -> None:
    # the tool-bound inner model merged its config with the node's and kept its callbacks:
    # every call was traced twice and the step's tokens doubled
    import asyncio

    from loopengt.tracing import RunEvents
    from tests.integration.test_tools_openai import FUNCTION_SPEC
    from tests.support.openai_server import ToolCallReply

    events = RunEvents("r1", max_chars=1000, prices={})
    seen: list[object] = []
    events.subscribe(seen.append)
    replies = [ToolCallReply("add", {"a": 2, "b": 3}), "It is 5."]
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(
            load_spec_text(FUNCTION_SPEC), models=chat_model(server), record=tmp_path / "c.yaml"
        )
        config: dict[str, object] = {"callbacks": [events]}
        if mode == "invoke":
            state = graph.invoke({"input": {}}, config)  # type: ignore[arg-type]
        else:
            state = asyncio.run(graph.ainvoke({"input": {}}, config))  # type: ignore[arg-type]
    assert state["outputs"] == {"total": "It is 5."}
    model_calls = [e for e in seen if getattr(e, "kind", None) == "model_call"]
    assert len(model_calls) == 2
    assert state["usage"]["model_calls"] == 2
