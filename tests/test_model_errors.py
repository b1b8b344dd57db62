"""Model-call failures end a run `failed` with one line naming the provider and what to do:
through the real ChatOpenAI client against the scripted server (401, 429, 500, unreachable,
missing key), and `explain_model_error` on constructed provider exceptions."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_openai.chat_models.base import OpenAIConnectionError, OpenAIRateLimitError

from loopengt.compile import compile_spec
from loopengt.errors import UserInputError
from loopengt.providers.errors import explain_model_error
from loopengt.spec import load_spec_text
from tests.support.openai_server import ErrorReply, ScriptedOpenAIServer

SECRET = "sk-fake-SECRET-77ab31"
ATTEMPTS = 3
SPEC = textwrap.dedent(f"""
    name: fails
    goal: Say hello.
    agents:
      - {{name: writer, model: "openai:test-model"}}
    steps:
      - {{name: write, agent: writer, prompt: Say hello.}}
    policy:
      retry: {{attempts: {ATTEMPTS}, backoff_seconds: 0.01}}
""")


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOOPENGT_MODEL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_config(text: str) -> None:
    Path(".loopengt").mkdir(exist_ok=True)
    Path(".loopengt/config.toml").write_text(textwrap.dedent(text))


def run_against(base_url: str, extra_config: str = "") -> dict[str, Any]:
    """Compile SPEC with `[llm] base_url` (so resolve_model builds the client) and run it."""
    write_config(f'[llm]\nbase_url = "{base_url}"\n{extra_config}')
    state: dict[str, Any] = compile_spec(load_spec_text(SPEC)).invoke({"input": {}})
    assert state["status"] == "failed"
    assert "write" not in (state.get("outputs") or {})
    return state


def reason_of(state: dict[str, Any]) -> str:
    reason = str(state["stop_reason"])
    assert "\n" not in reason
    return reason


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


# -- through the real client -----------------------------------------------------------------


def test_401_is_not_retried_and_names_the_key_variable() -> None:
    with ScriptedOpenAIServer([ErrorReply(401)] * ATTEMPTS) as server:
        url, state = server.base_url, run_against(server.base_url)
        assert server.request_count == 1
    assert reason_of(state) == (
        f"error: step 'write' failed after 1 attempt(s): openai: the server at "
        f"{url} rejected the API key (401 unauthorized); check OPENAI_API_KEY "
        "(the variable named by [llm] api_key_env)"
    )
    assert state["errors"] == [{"step": "write", "error": state["stop_reason"][7:]}]


def test_401_names_the_configured_key_variable_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_KEY", SECRET)
    # a server that echoes the key it got, as some proxies do
    with ScriptedOpenAIServer([ErrorReply(401, f"Incorrect API key {SECRET}")]) as server:
        state = run_against(server.base_url, 'api_key_env = "LAB_KEY"\n')
        assert server.headers[0]["authorization"] == f"Bearer {SECRET}"  # the key was sent
    assert "check LAB_KEY" in reason_of(state)
    assert SECRET not in str(state)


def test_429_is_retried_per_policy_then_says_rate_limited() -> None:
    with ScriptedOpenAIServer([ErrorReply(429)] * ATTEMPTS) as server:
        url, state = server.base_url, run_against(server.base_url)
        assert server.request_count == ATTEMPTS
    reason = reason_of(state)
    assert reason.startswith(
        f"error: step 'write' failed after {ATTEMPTS} attempt(s): openai: rate limited at "
        f"{url} (429)"
    )
    assert "retry later" in reason


def test_429_then_success_completes() -> None:
    with ScriptedOpenAIServer([ErrorReply(429), ErrorReply(503), "hello"]) as server:
        write_config(f'[llm]\nbase_url = "{server.base_url}"\n')
        state = compile_spec(load_spec_text(SPEC)).invoke({"input": {}})
        assert server.request_count == 3
    assert (state["status"], state["outputs"], state.get("stop_reason")) == (
        "completed",
        {"write": "hello"},
        None,
    )


@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_are_retried_per_policy(status: int) -> None:
    with ScriptedOpenAIServer([ErrorReply(status)] * ATTEMPTS) as server:
        url, state = server.base_url, run_against(server.base_url)
        assert server.request_count == ATTEMPTS
    reason = reason_of(state)
    assert reason.startswith(
        f"error: step 'write' failed after {ATTEMPTS} attempt(s): openai: server error "
        f"{status} at {url}"
    )
    assert "loopengt resume" in reason
    assert ": injected error;" in reason  # the server's own words


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        # llama-cpp-python's server on a json_schema response_format
        (
            ErrorReply(500, "1 validation error: Input should be 'text' or 'json_object'"),
            "Input should be 'text' or 'json_object'",
        ),
        (ErrorReply(422, "temperature must be at most 2"), "temperature must be at most 2"),
        (ErrorReply(400, "maximum context length is 4096 tokens"), "maximum context length"),
    ],
)
def test_a_request_the_server_refuses_is_not_retried(reply: ErrorReply, said: str) -> None:
    with ScriptedOpenAIServer([reply] * ATTEMPTS) as server:
        url, state = server.base_url, run_against(server.base_url)
        assert server.request_count == 1  # the same request would fail the same way
    reason = reason_of(state)
    assert f"failed after 1 attempt(s): openai: request refused at {url} ({reply.status})" in reason
    assert said in reason and "retry later" not in reason


def test_a_server_echoing_the_key_in_another_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with ScriptedOpenAIServer([ErrorReply(400, f"bad request from {SECRET}")]) as server:
        url, state = server.base_url, run_against(server.base_url)
    reason = reason_of(state)
    assert f"openai: request refused at {url} (400)" in reason
    assert "bad request from [redacted]" in reason and SECRET not in str(state)


def test_unreachable_base_url_says_cannot_reach_it() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    reason = reason_of(run_against(url))
    assert f"openai: cannot reach the server at {url}; is it running?" in reason
    assert "[llm] base_url" in reason


def test_unreachable_base_url_is_retried_per_policy() -> None:
    state = run_against(f"http://127.0.0.1:{closed_port()}/v1")
    assert f"failed after {ATTEMPTS} attempt(s)" in reason_of(state)


def test_missing_key_fails_at_compile_time() -> None:
    with pytest.raises(UserInputError) as exc:
        compile_spec(load_spec_text(SPEC))
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("agent 'writer': openai: OPENAI_API_KEY is not set; export it")


# -- explain_model_error on constructed exceptions --------------------------------------------

URL = "http://models.example/v1"
REQUEST = httpx.Request("POST", f"{URL}/chat/completions")


def status_error(status: int, cls: type[openai.APIStatusError] = openai.APIStatusError) -> Any:
    response = httpx.Response(status, request=REQUEST)
    return cls(f"Error code: {status} - details\nmore details", response=response, body=None)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (status_error(403), f"openai: access denied at {URL} (403); the key lacks access"),
        (status_error(404, openai.NotFoundError), f"openai: not found at {URL} (404); check"),
        (status_error(400), f"openai: request refused at {URL} (400): Error code: 400 - details"),
        (status_error(401), f"openai: the server at {URL} rejected the API key (401"),
        (status_error(503), f"openai: server error 503 at {URL} after"),
        (openai.APITimeoutError(REQUEST), f"openai: no answer at {URL} in time"),
        (openai.APIConnectionError(request=REQUEST), f"openai: cannot reach the server at {URL}"),
        # langchain-openai re-raises the SDK errors as its own subclasses
        (
            OpenAIRateLimitError(
                "slow down", response=httpx.Response(429, request=REQUEST), body=None
            ),
            f"openai: rate limited at {URL} (429)",
        ),
        (
            OpenAIConnectionError(request=REQUEST),
            f"openai: cannot reach the server at {URL}",
        ),
        # the ollama client surfaces httpx errors
        (
            httpx.ConnectError("refused", request=httpx.Request("POST", "http://h:11434/api/chat")),
            "ollama: cannot reach the server at http://h:11434; is it running?",
        ),
        (httpx.ReadTimeout("slow"), "ollama: no answer in time"),
        (UserInputError("our own message"), "our own message"),
        (ValueError("\nfirst real line\nsecond"), "first real line"),
        (RuntimeError(), "RuntimeError"),
    ],
)
def test_explanations(exc: BaseException, expected: str) -> None:
    explained = explain_model_error(exc)
    assert explained.startswith(expected)
    assert "\n" not in explained


def test_other_providers_are_named_by_their_sdk_module() -> None:
    error = type("RateLimitError", (Exception,), {"__module__": "anthropic._exceptions"})()
    error.status_code = 429
    assert explain_model_error(error).startswith("anthropic: rate limited (429)")


def test_keys_are_redacted_from_any_explanation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET + "-anthropic")
    monkeypatch.setenv("TEAM_KEY", "team-secret-value")
    write_config('[llm.openai]\napi_key_env = "TEAM_KEY"\n')
    for message in (f"sent {SECRET}-anthropic", "sent team-secret-value"):
        explained = explain_model_error(ValueError(message))
        assert explained == "sent [redacted]"
