"""Model resolution (loopengt.providers.registry): which model each agent really gets,
provider settings from `.loopengt/config.toml`, and the one-line errors of a model that
cannot be configured."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI

import loopengt.providers.local
from loopengt.compile import compile_spec
from loopengt.errors import UserInputError
from loopengt.graph.context import CompileContext
from loopengt.providers.registry import resolve_model
from loopengt.spec import load_spec_text
from tests.support.openai_server import ScriptedOpenAIServer

SECRET = "sk-fake-SECRET-4f9c2e"  # recognisable, so a test can tell if it leaks
ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOOPENGT_MODEL", "ANTHROPIC_API_KEY", "OLLAMA_HOST")


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory and an environment with no model settings."""
    monkeypatch.chdir(tmp_path)
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_config(text: str) -> None:
    Path(".loopengt").mkdir(exist_ok=True)
    Path(".loopengt/config.toml").write_text(textwrap.dedent(text))


class LocalStub:
    """Stands in for loopengt.providers.local: availability and the calls of local_chat_model."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
        self.model = FakeMessagesListChatModel(responses=[AIMessage("local")])
        self.calls: list[tuple[str | None, float | None]] = []
        monkeypatch.setattr(loopengt.providers.local, "local_model_available", lambda: available)
        monkeypatch.setattr(loopengt.providers.local, "local_chat_model", self.chat_model)

    def chat_model(
        self, name: str | None = None, *, temperature: float | None = None, threads: Any = None
    ) -> Any:
        self.calls.append((name, temperature))
        return self.model


def one_line_error(exc: pytest.ExceptionInfo[UserInputError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# -- resolution order ------------------------------------------------------------------------

LAYERS = ("step", "agent", "defaults", "config", "env", "local")


def spec_with(layers: set[str], agent: str = "openai:from-agent") -> str:
    step_model = ', model: "openai:from-step"' if "step" in layers else ""
    agent_model = f', model: "{agent}"' if "agent" in layers else ""
    defaults = 'defaults: {model: "openai:from-defaults"}' if "defaults" in layers else ""
    return textwrap.dedent(f"""
        name: order
        goal: Check which model wins.
        {defaults}
        agents:
          - {{name: writer{agent_model}}}
        steps:
          - {{name: write, agent: writer{step_model}}}
    """)


def model_id(model: BaseChatModel, local: LocalStub) -> str:
    if model is local.model:
        return "local"
    assert isinstance(model, ChatOpenAI)
    return str(model.model_name)


@pytest.mark.parametrize("winner", LAYERS)
def test_each_layer_beats_the_ones_after_it(winner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    present = set(LAYERS[LAYERS.index(winner) :])
    # every openai layer talks to a local server, so no key is needed
    config = '[llm]\nbase_url = "http://127.0.0.1:9/v1"\n'
    if "config" in present:
        config += 'model = "openai:from-config"\n'
    write_config(config)
    if "env" in present:
        monkeypatch.setenv("LOOPENGT_MODEL", "openai:from-env")
    local = LocalStub(monkeypatch, available=True)  # `local` is always the last resort

    spec = load_spec_text(spec_with(present))
    ctx = CompileContext(spec)
    model = ctx.model_for(spec.agent("writer"), spec.steps[0])

    expected = {"local": "local"}.get(winner, f"from-{winner}")
    assert model_id(model, local) == expected
    assert local.calls == ([(None, None)] if winner == "local" else [])


def test_no_model_anywhere_is_a_one_line_error_saying_how_to_configure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    LocalStub(monkeypatch, available=False)
    with pytest.raises(UserInputError) as exc:
        compile_spec(load_spec_text(spec_with(set())))
    message = one_line_error(exc)
    assert message.startswith("agent 'writer': no model configured")
    for hint in ("defaults.model", "[llm] model", "LOOPENGT_MODEL", "loopengt[local]"):
        assert hint in message


def test_each_agent_of_a_run_calls_the_model_it_resolves_to() -> None:
    """Through compile and invoke: the server sees which model every step asked for."""
    spec = textwrap.dedent("""
        name: three-models
        goal: Use three models.
        defaults: {model: "openai:from-defaults"}
        agents:
          - {name: planner, model: "openai:from-agent"}
          - {name: writer}
        steps:
          - {name: plan, agent: planner, prompt: Plan.}
          - {name: draft, agent: planner, model: "openai:from-step", prompt: Draft.,
             depends_on: [plan]}
          - {name: write, agent: writer, prompt: Write., depends_on: [draft]}
    """)
    with ScriptedOpenAIServer(["a plan", "a draft", "a text"]) as server:
        write_config(f'[llm]\nbase_url = "{server.base_url}"\n')
        state = compile_spec(load_spec_text(spec)).invoke({"input": {}})
    assert state["status"] == "completed"
    assert [r["model"] for r in server.requests] == ["from-agent", "from-step", "from-defaults"]
    assert state["outputs"] == {"plan": "a plan", "draft": "a draft", "write": "a text"}


def test_temperature_comes_from_the_agent_else_the_spec_defaults() -> None:
    write_config('[llm]\nbase_url = "http://127.0.0.1:9/v1"\n')
    spec = load_spec_text(
        textwrap.dedent("""
            name: temps
            goal: g
            defaults: {model: "openai:m", temperature: 0.7}
            agents:
              - {name: hot, temperature: 1.5}
              - {name: plain}
            steps:
              - {name: a, agent: hot}
              - {name: b, agent: plain}
        """)
    )
    ctx = CompileContext(spec)
    hot, plain = ctx.model_for(spec.agent("hot")), ctx.model_for(spec.agent("plain"))
    assert isinstance(hot, ChatOpenAI) and isinstance(plain, ChatOpenAI)
    assert (hot.temperature, plain.temperature) == (1.5, 0.7)
    assert hot.max_retries == 0  # retries are the policy's job, not the client's


def test_local_with_a_name_passes_the_name_on(monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalStub(monkeypatch, available=True)
    assert resolve_model("local:smollm2", temperature=0.2) is local.model
    assert local.calls == [("smollm2", 0.2)]


# -- openai settings -------------------------------------------------------------------------


def test_provider_table_gives_base_url_and_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    write_config("""
        [llm]
        base_url = "http://legacy.invalid/v1"
        [llm.openai]
        base_url = "http://table.invalid/v1"
        api_key_env = "MY_KEY"
    """)
    model = resolve_model("openai:gpt-4o-mini")
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://table.invalid/v1"  # the table beats [llm]
    assert model.openai_api_key is not None
    assert model.openai_api_key.get_secret_value() == SECRET
    assert SECRET not in repr(model)


def test_legacy_llm_base_url_needs_no_key() -> None:
    write_config('[llm]\nbase_url = "http://127.0.0.1:8000/v1"\n')
    model = resolve_model("openai:served-model")
    assert isinstance(model, ChatOpenAI)
    assert (model.model_name, model.openai_api_base) == ("served-model", "http://127.0.0.1:8000/v1")


def test_openai_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.invalid/v1")
    model = resolve_model("openai:m")
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://env.invalid/v1"


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:8000/v1"])
def test_named_key_variable_that_is_not_set(base_url: str | None) -> None:
    """Even with a base_url: a config that names the key variable wants that key."""
    url = f'base_url = "{base_url}"\n' if base_url else ""
    write_config(f'[llm.openai]\napi_key_env = "TOGETHER_KEY"\n{url}')
    with pytest.raises(UserInputError) as exc:
        resolve_model("openai:m")
    message = one_line_error(exc)
    assert message.startswith("openai: TOGETHER_KEY is not set")


def test_missing_openai_key_names_the_variable_and_never_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)  # set, but not the one openai wants
    with pytest.raises(UserInputError) as exc:
        resolve_model("openai:gpt-4o")
    message = one_line_error(exc)
    assert "OPENAI_API_KEY is not set" in message and "[llm] base_url" in message
    assert SECRET not in message


def test_openai_key_from_the_default_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    model = resolve_model("openai:gpt-4o")
    assert isinstance(model, ChatOpenAI) and model.openai_api_key is not None
    assert model.openai_api_key.get_secret_value() == SECRET


# -- malformed names and other providers -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "gpt-4o",
            "model 'gpt-4o' names no provider: write 'provider:model', e.g. 'openai:gpt-4o'",
        ),
        ("bedrock:claude", "unknown model provider 'bedrock' in 'bedrock:claude'"),
        ("openai:", "model 'openai:' names no model: write 'openai:MODEL'"),
        ("anthropic:", "model 'anthropic:' names no model"),
    ],
)
def test_malformed_model_names(name: str, expected: str) -> None:
    with pytest.raises(UserInputError) as exc:
        resolve_model(name)
    assert one_line_error(exc).startswith(expected)


@pytest.mark.parametrize(
    ("provider", "package"),
    [("anthropic", "langchain-anthropic"), ("ollama", "langchain-ollama")],
)
def test_missing_provider_package_names_the_extra(
    provider: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail, installed or not
    monkeypatch.setitem(sys.modules, package.replace("-", "_"), None)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with pytest.raises(UserInputError) as exc:
        compile_spec(load_spec_text(spec_with({"agent"}, agent=f"{provider}:m")))
    message = one_line_error(exc)
    assert message.startswith(f"agent 'writer': {provider}: models need the {package} package")
    assert f"loopengt[{provider}]" in message
    assert SECRET not in message


class FakeChat:
    """A provider chat class that records how it was built."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def fake_package(monkeypatch: pytest.MonkeyPatch, module: str, cls: str) -> None:
    package = types.ModuleType(module)
    setattr(package, cls, FakeChat)
    monkeypatch.setitem(sys.modules, module, package)


def test_anthropic_settings_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(monkeypatch, "langchain_anthropic", "ChatAnthropic")
    write_config('[llm]\nbase_url = "http://openai-only.invalid/v1"\n')
    with pytest.raises(UserInputError) as exc:
        resolve_model("anthropic:claude-sonnet-4-0")
    assert one_line_error(exc).startswith("anthropic: ANTHROPIC_API_KEY is not set; export it (")

    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    model: Any = resolve_model("anthropic:claude-sonnet-4-0", temperature=0.1)
    # the legacy [llm] base_url is openai's; anthropic keeps its own endpoint
    assert model.kwargs == {
        "model": "claude-sonnet-4-0",
        "api_key": SECRET,
        "max_retries": 0,
        "temperature": 0.1,
    }


def test_ollama_model_with_a_tag_and_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(monkeypatch, "langchain_ollama", "ChatOllama")
    model: Any = resolve_model("ollama:llama3.2:3b")
    assert model.kwargs == {"model": "llama3.2:3b"}  # no key needed
    monkeypatch.setenv("OLLAMA_HOST", "http://env-host:11434")
    assert resolve_model("ollama:m").kwargs["base_url"] == "http://env-host:11434"  # type: ignore[attr-defined]
    write_config('[llm.ollama]\nbase_url = "http://table-host:11434"\n')
    assert resolve_model("ollama:m").kwargs["base_url"] == "http://table-host:11434"  # type: ignore[attr-defined]


def test_output_tokens_are_capped_per_agent_defaults_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OpenAI-compatible server without a cap may write until its context is full: every
    request carries one, as OpenAI's field and as the `max_tokens` compatible servers read."""
    from loopengt.compile import compile_spec
    from loopengt.config import Config
    from loopengt.spec import load_spec_text
    from tests.support.openai_server import ScriptedOpenAIServer

    spec = """
name: capped
goal: g
defaults: {max_tokens: 300}
agents:
  - {name: short, max_tokens: 50}
  - {name: plain}
steps:
  - {name: a, agent: short, prompt: x}
  - {name: b, agent: plain, prompt: y, depends_on: [a]}
policy: {max_turns: 4}
"""
    with ScriptedOpenAIServer(["one", "two", "three"]) as server:
        state = tmp_path / ".loopengt"
        state.mkdir()
        (state / "config.toml").write_text(
            f'[llm]\nmodel = "openai:m"\nbase_url = "{server.base_url}"\nmax_tokens = 1000\n'
        )
        config = Config.load(tmp_path)
        compile_spec(load_spec_text(spec), config=config).invoke({"input": {}})
        sent = [(r.get("max_completion_tokens"), r.get("max_tokens")) for r in server.requests]
    assert sent == [(50, 50), (300, 300)]
    from loopengt.providers.registry import DEFAULT_MAX_TOKENS, resolve_model

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert resolve_model("openai:m", config=Config.load(tmp_path / "none")).max_tokens == (  # type: ignore[attr-defined]
        DEFAULT_MAX_TOKENS
    )
    assert resolve_model("openai:m", config=config).max_tokens == 1000  # type: ignore[attr-defined]
