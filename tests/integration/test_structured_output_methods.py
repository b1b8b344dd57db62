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
from loopengt.spec import load_spec_text
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
        assert tool["function"]["parameters"]["required"] == ["pass", "feedback"]
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
