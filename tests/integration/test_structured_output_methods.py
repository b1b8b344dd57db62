"""Issue 12: how structured output is asked for is a setting, and `auto` routes around a
server that refuses a method. llama-cpp-python's server answers `response_format:
{"type": "json_schema"}` with a 500 whose body says the input is invalid; it takes
`json_object` with a schema. Real ChatOpenAI against the scripted server, which plays that
server's part here."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from loopengt.compile import compile_spec
from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.spec import SpecError, load_spec_text
from tests.integration.clients import chat_model
from tests.integration.test_fanout_evaluator_custom_openai import EVALUATOR as EVALUATOR_SPEC
from tests.support.openai_server import ErrorReply, JsonReply, Reply, ScriptedOpenAIServer

EVALUATOR = textwrap.dedent(EVALUATOR_SPEC)

LLAMA_CPP_REFUSAL = (
    "1 validation error for CreateChatCompletionRequest response_format.type Input should be "
    "'text' or 'json_object'"
)


def like_llama_cpp_server(verdicts: list[dict[str, Any]]) -> Any:
    """Refuses json_schema as llama-cpp-python's server does; answers the rest."""

    def answer(request: dict[str, Any]) -> Reply:
        kind = (request.get("response_format") or {}).get("type")
        if kind == "json_schema":
            return ErrorReply(500, LLAMA_CPP_REFUSAL)
        if kind == "json_object":
            assert request["response_format"]["schema"]["required"]  # the grammar's schema
            return JsonReply(verdicts.pop(0))
        return "Silent wings at dusk"

    return answer


def project(tmp_path: Path, setting: str | None) -> Config:
    (tmp_path / ".loopengt").mkdir()
    if setting is not None:
        text = f'[llm]\nstructured_output = "{setting}"\n'
        (tmp_path / ".loopengt" / "config.toml").write_text(text)
    return Config.load(tmp_path)


def kinds(server: ScriptedOpenAIServer) -> list[str | None]:
    return [(r.get("response_format") or {}).get("type") for r in server.requests]


def test_auto_falls_back_to_json_object_once_and_keeps_it(tmp_path: Path) -> None:
    verdicts = [
        {"pass": False, "score": 0.2, "feedback": "Use 5-7-5."},
        {"pass": True, "score": 0.9, "feedback": "Lovely."},
    ]
    with ScriptedOpenAIServer([], responder=like_llama_cpp_server(verdicts)) as server:
        graph = compile_spec(
            load_spec_text(EVALUATOR), models=chat_model(server), config=project(tmp_path, None)
        )
        state = graph.invoke({"input": {}})
    assert state["status"] == "completed", state.get("stop_reason")
    assert state["verdicts"]["judge"]["pass"] is True
    # refused once, then json_object for this verdict and the next: the choice is kept
    assert kinds(server) == [None, "json_schema", "json_object", None, "json_object"]
    assert state["usage"]["model_calls"] == 4  # the refused request got no answer


@pytest.mark.parametrize(
    ("setting", "sent"),
    [("json_object", "json_object"), ("prompt", None), ("function_calling", None)],
)
def test_a_set_method_is_used_from_the_first_call(
    tmp_path: Path, setting: str, sent: str | None
) -> None:
    verdict = {"pass": True, "score": 1.0, "feedback": "ok"}

    def answer(request: dict[str, Any]) -> Reply:
        if request["messages"][-1]["content"].startswith("Reply with only a JSON object"):
            return JsonReply(verdict)  # a forced tool call when the request forces one
        return "Silent wings at dusk"

    with ScriptedOpenAIServer([], responder=answer) as server:
        graph = compile_spec(
            load_spec_text(EVALUATOR),
            models=chat_model(server),
            config=project(tmp_path, setting),
        )
        state = graph.invoke({"input": {}})
    assert state["status"] == "completed", state.get("stop_reason")
    assert kinds(server) == [None, sent]
    judged = server.requests[1]
    if setting == "function_calling":
        [tool] = judged["tools"]
        assert tool["function"]["parameters"]["required"] == ["feedback", "pass"]
        assert judged["tool_choice"]["function"]["name"] == tool["function"]["name"]
    else:
        assert "tools" not in judged


def test_a_set_method_the_server_refuses_fails_without_retrying(tmp_path: Path) -> None:
    with ScriptedOpenAIServer([], responder=like_llama_cpp_server([])) as server:
        graph = compile_spec(
            load_spec_text(EVALUATOR),
            models=chat_model(server),
            config=project(tmp_path, "json_schema"),
        )
        state = graph.invoke({"input": {}})
    assert state["status"] == "failed"
    assert "Input should be 'text' or 'json_object'" in state["stop_reason"]
    assert kinds(server) == [None, "json_schema"]  # refused is not transient: no retry


def test_an_unknown_setting_is_one_line_at_compile_time(tmp_path: Path) -> None:
    with (
        ScriptedOpenAIServer([]) as server,
        pytest.raises(UserInputError, match="structured_output 'xml': use auto, json_schema"),
    ):
        compile_spec(
            load_spec_text(EVALUATOR), models=chat_model(server), config=project(tmp_path, "xml")
        )


PER_AGENT = """
name: per-agent
goal: Two agents on one server, each asked for JSON its own way.
defaults: {model: "openai:m"}
agents:
  - {name: forced, structured_output: function_calling}
  - {name: plain}
steps:
  - name: first
    agent: forced
    output_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
  - name: second
    agent: plain
    depends_on: [first]
    output_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
"""


def test_an_agent_setting_overrides_the_configured_method_for_that_agent_only(
    tmp_path: Path,
) -> None:
    with ScriptedOpenAIServer([], responder=lambda request: JsonReply({"n": 1})) as server:
        (tmp_path / ".loopengt").mkdir()
        text = f'[llm]\nstructured_output = "json_object"\nbase_url = "{server.base_url}"\n'
        (tmp_path / ".loopengt" / "config.toml").write_text(text)
        graph = compile_spec(load_spec_text(PER_AGENT), config=Config.load(tmp_path))
        state = graph.invoke({"input": {}})
    assert state["status"] == "completed", state.get("stop_reason")
    forced, plain = server.requests
    assert forced["tool_choice"]["function"]["name"] == forced["tools"][0]["function"]["name"]
    assert "response_format" not in forced
    assert plain["response_format"]["type"] == "json_object"  # the configured method
    assert "tools" not in plain
    assert state["outputs"] == {"first": {"n": 1}, "second": {"n": 1}}


def test_an_unknown_agent_setting_is_a_spec_error_with_its_place() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(PER_AGENT.replace("function_calling", "xml"), filename="loop.yaml")
    assert str(caught.value) == (
        "loop.yaml:6:39: agents[0].structured_output: must be 'auto', 'json_schema', "
        "'json_object', 'function_calling' or 'prompt', got 'xml'"
    )


@pytest.mark.parametrize("setting", ["auto", "json_object", "function_calling", "prompt"])
def test_a_run_recorded_by_any_method_replays(tmp_path: Path, setting: str) -> None:
    """The replaying model asks by json_schema; a cassette recorded after `auto` fell back
    to json_object (llama-cpp-python's server), or by another method, still answers it: the
    schema asked for is the same, and it is in the messages either way."""
    verdicts = [
        {"feedback": "Use 5-7-5.", "pass": False, "score": 0.2},
        {"feedback": "Lovely.", "pass": True, "score": 0.9},
    ]

    llama_cpp = like_llama_cpp_server(verdicts)

    def answer(request: dict[str, Any]) -> Reply:
        if setting == "auto":
            return llama_cpp(request)
        if request["messages"][-1]["content"].startswith("Reply with only a JSON object"):
            return JsonReply(verdicts.pop(0))  # a forced tool call when the request forces one
        return "Silent wings at dusk"

    cassette = tmp_path / "tape.yaml"
    with ScriptedOpenAIServer([], responder=answer) as server:
        config = project(tmp_path, None if setting == "auto" else setting)
        graph = compile_spec(
            load_spec_text(EVALUATOR), models=chat_model(server), config=config, record=cassette
        )
        recorded = graph.invoke({"input": {}})
    assert recorded["status"] == "completed", recorded.get("stop_reason")

    replayed = compile_spec(load_spec_text(EVALUATOR), replay=cassette).invoke({"input": {}})
    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert replayed["outputs"] == recorded["outputs"]
    assert replayed["verdicts"]["judge"] == {"feedback": "Lovely.", "pass": True, "score": 0.9}
