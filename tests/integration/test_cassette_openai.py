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
