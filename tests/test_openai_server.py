"""The scripted OpenAI server, exercised through the real langchain-openai client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.support.openai_server import (
    Delayed,
    ErrorReply,
    JsonReply,
    Reply,
    ScriptedOpenAIServer,
    ToolCall,
    ToolCallReply,
    echo_responder,
    last_user_text,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_llm(srv: ScriptedOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        api_key="test-key", base_url=srv.base_url, model="test-model", max_retries=0, **kwargs
    )


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Verdict(BaseModel):
    label: str
    score: float


def test_invoke_returns_text_and_usage() -> None:
    with ScriptedOpenAIServer(["hello there friend"]) as srv:
        msg = make_llm(srv).invoke("say hello please")

    assert msg.content == "hello there friend"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == 3
    assert msg.usage_metadata["output_tokens"] == 3
    assert msg.usage_metadata["total_tokens"] == 6


def test_stream_yields_chunks_and_final_usage() -> None:
    with ScriptedOpenAIServer(["one two three four"]) as srv:
        chunks = list(make_llm(srv, stream_usage=True).stream("count"))

    assert sum(1 for c in chunks if c.content) == 4
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "one two three four"
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 4
    assert merged.usage_metadata["total_tokens"] == 5
    assert srv.requests[0]["stream"] is True
    assert srv.requests[0]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_request_sends_no_usage() -> None:
    with ScriptedOpenAIServer(["a b"]) as srv:
        chunks = list(make_llm(srv).stream("hi"))

    assert "".join(str(c.content) for c in chunks) == "a b"
    assert all(not c.usage_metadata for c in chunks)


def test_bind_tools_produces_tool_calls_then_final_answer() -> None:
    replies: list[Reply] = [ToolCallReply("add", {"a": 1, "b": 2}), "the sum is 3"]
    with ScriptedOpenAIServer(replies) as srv:
        llm = make_llm(srv).bind_tools([add])
        first = llm.invoke("what is 1 + 2?")
        assert isinstance(first, AIMessage)
        call = first.tool_calls[0]
        result = ToolMessage(str(add.invoke(call["args"])), tool_call_id=call["id"])
        second = llm.invoke([HumanMessage("what is 1 + 2?"), first, result])

    assert call["name"] == "add"
    assert call["args"] == {"a": 1, "b": 2}
    assert call["id"] == "call_1_0"
    assert second.content == "the sum is 3"
    assert srv.requests[0]["tools"][0]["function"]["name"] == "add"
    assert srv.requests[1]["messages"][-1] == {
        "role": "tool",
        "content": "3",
        "tool_call_id": "call_1_0",
    }


def test_several_tool_calls_in_one_message_and_streamed() -> None:
    reply = ToolCallReply(
        calls=[ToolCall("add", {"a": 1, "b": 2}, id="x"), ToolCall("add", {"a": 5, "b": 5})]
    )
    with ScriptedOpenAIServer([reply, reply]) as srv:
        llm = make_llm(srv).bind_tools([add])
        message = llm.invoke("two sums")
        chunks = [c for c in llm.stream("two sums") if isinstance(c, AIMessageChunk)]
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged += chunk

    expected = [("x", {"a": 1, "b": 2}), ("call_1_1", {"a": 5, "b": 5})]
    assert [(c["id"], c["args"]) for c in message.tool_calls] == expected
    assert [c["args"] for c in merged.tool_calls] == [{"a": 1, "b": 2}, {"a": 5, "b": 5}]


def test_structured_output_json_schema() -> None:
    with ScriptedOpenAIServer([JsonReply({"label": "good", "score": 0.9})]) as srv:
        verdict = make_llm(srv).with_structured_output(Verdict, method="json_schema").invoke("rate")

    assert verdict == Verdict(label="good", score=0.9)
    response_format = srv.requests[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Verdict"
    assert set(response_format["json_schema"]["schema"]["properties"]) == {"label", "score"}


def test_structured_output_function_calling_gets_forced_tool_call() -> None:
    with ScriptedOpenAIServer([{"label": "bad", "score": 0.1}]) as srv:
        llm = make_llm(srv).with_structured_output(Verdict, method="function_calling")
        verdict = llm.invoke("rate")

    assert verdict == Verdict(label="bad", score=0.1)
    assert srv.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "Verdict"}}


@pytest.mark.parametrize(
    ("status", "error_class", "error_type", "error_code"),
    [
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", None),
        (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
    ],
)
def test_injected_errors_raise_sdk_exceptions(
    status: int, error_class: type[openai.APIStatusError], error_type: str, error_code: str | None
) -> None:
    with ScriptedOpenAIServer([ErrorReply(status, "scripted failure"), "recovered"]) as srv:
        llm = make_llm(srv)
        with pytest.raises(error_class, match="scripted failure") as info:
            llm.invoke("hi")
        assert llm.invoke("hi").content == "recovered"

    assert info.value.status_code == status
    assert (info.value.type, info.value.code) == (error_type, error_code)


def test_records_requests_and_headers() -> None:
    with ScriptedOpenAIServer(["a", "b"]) as srv:
        llm = make_llm(srv, temperature=0.25)
        llm.invoke("first question")
        llm.invoke([HumanMessage("second question")])

    assert srv.request_count == 2
    assert [last_user_text(r) for r in srv.requests] == ["first question", "second question"]
    assert srv.requests[0]["model"] == "test-model"
    assert srv.requests[0]["temperature"] == 0.25
    assert all(h["authorization"] == "Bearer test-key" for h in srv.headers)


def test_exhausted_script_fails_fast_and_is_recorded() -> None:
    with ScriptedOpenAIServer(["only reply"]) as srv:
        llm = make_llm(srv, timeout=5)
        llm.invoke("one")
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError, match="script exhausted"):
            llm.invoke("two")

    assert time.monotonic() - started < 2
    assert srv.request_count == 2
    assert srv.errors == ["ScriptedOpenAIServer: script exhausted at request #2"]


def test_callable_reply_and_responder_route_by_request() -> None:
    def route(request: dict[str, Any]) -> str:
        return "weather: sunny" if "weather" in last_user_text(request) else "unknown"

    with ScriptedOpenAIServer([route], responder=echo_responder) as srv:
        llm = make_llm(srv)
        assert llm.invoke("what is the weather?").content == "weather: sunny"
        assert llm.invoke("ping").content == "echo: ping"
        assert llm.invoke("pong").content == "echo: pong"


def test_delay_triggers_client_timeout() -> None:
    with ScriptedOpenAIServer([Delayed("late", 2.0), "on time"]) as srv:
        with pytest.raises(openai.APITimeoutError):
            make_llm(srv, timeout=0.3).invoke("hi")
        assert make_llm(srv, timeout=5).invoke("hi").content == "on time"


def test_delayed_requests_are_served_in_parallel() -> None:
    with ScriptedOpenAIServer(responder=lambda _: Delayed("done", 0.5)) as srv:
        llm = make_llm(srv)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda i: llm.invoke(f"q{i}").content, range(4)))

    assert results == ["done"] * 4
    assert time.monotonic() - started < 1.5
    assert srv.request_count == 4


def test_models_endpoint_lists_test_model() -> None:
    with ScriptedOpenAIServer() as srv:
        client = openai.OpenAI(api_key="test-key", base_url=srv.base_url, max_retries=0)
        assert [m.id for m in client.models.list()] == ["test-model"]


def test_stop_releases_the_port() -> None:
    srv = ScriptedOpenAIServer(["x"]).start()
    url = srv.base_url
    srv.stop()

    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/models", timeout=1)


def test_subprocess_mode_prints_url_and_counts_requests(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "replies": [
                    "scripted text",
                    {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
                    {"delay": 0.1, "error": {"status": 429, "message": "slow down"}},
                ],
                "responder": "echo",
            }
        )
    )
    count_file = tmp_path / "count"
    command = [sys.executable, "-m", "tests.support.openai_server", "--port", "0"]
    command += ["--script", str(script), "--count-file", str(count_file)]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            assert base_url.endswith("/v1")
            llm = ChatOpenAI(
                api_key="test-key", base_url=base_url, model="test-model", max_retries=0
            )

            assert llm.invoke("hi").content == "scripted text"
            assert llm.bind_tools([add]).invoke("add").tool_calls[0]["args"] == {"a": 2, "b": 3}
            with pytest.raises(openai.RateLimitError, match="slow down"):
                llm.invoke("again")
            assert llm.invoke("repeat after me").content == "echo: repeat after me"
            assert count_file.read_text() == "4"
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    assert proc.returncode == 0  # SIGTERM is a clean shutdown, not a crash
