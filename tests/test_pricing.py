"""Token cost per model call (loopengt.providers.pricing) and the cost a run adds up in
state["usage"]."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage

from loopengt.compile import compile_spec
from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.providers.pricing import KNOWN_PRICES, cost_usd, price_of
from loopengt.spec import load_spec_text
from tests.support.openai_server import ScriptedOpenAIServer


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .loopengt/config.toml unless a test writes one
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOOPENGT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_config(text: str) -> None:
    Path(".loopengt").mkdir(exist_ok=True)
    Path(".loopengt/config.toml").write_text(textwrap.dedent(text))


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("openai:gpt-4o-mini", "gpt-4o-mini"),
        # replies name the snapshot that answered; the longest family must win
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai:gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
        ("o3-2025-04-16", "o3"),
        ("o4-mini", "o4-mini"),
        # Anthropic answers with dated names; `-latest` and `-0` are the aliases users write
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic:claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-opus-4-20250514", "claude-opus-4"),
    ],
)
def test_known_models(model: str, family: str) -> None:
    assert price_of(model) == KNOWN_PRICES[family]


@pytest.mark.parametrize(
    "model",
    [
        None,
        "",
        "test-model",
        "local:SmolLM2-135M-Instruct",
        # other models that merely share a prefix with a priced one
        "o3-mini",
        "o3-pro",
        "gpt-4o-mini-realtime-preview",
        "gpt-4o-latest-x",
    ],
)
def test_unknown_models_cost_nothing(model: str | None) -> None:
    assert price_of(model) is None
    assert cost_usd(model, 1000, 1000) == 0.0


def test_cost_is_per_million_tokens() -> None:
    assert cost_usd("gpt-4o", 1_000_000, 500_000) == pytest.approx(2.50 + 5.00)
    assert cost_usd("openai:gpt-4o-mini", 2000, 1000) == pytest.approx(
        (2000 * 0.15 + 1000 * 0.60) / 1e6
    )


def test_config_adds_and_overrides_prices() -> None:
    write_config("""
        [prices."my-model"]
        input = 1
        output = 2.5
        [prices."gpt-4o-mini"]
        input = 0.1
        [prices."openai:gpt-4o"]
        input = 3
        output = 12
    """)
    prices = Config.load().prices
    assert price_of("my-model", prices) == (1.0, 2.5)
    assert price_of("openai:my-model", prices) == (1.0, 2.5)
    # an override of a family applies to its snapshots too; a missing field costs 0
    assert price_of("gpt-4o-mini-2024-07-18", prices) == (0.1, 0.0)
    # a provider-prefixed entry is for that provider's name only
    assert price_of("openai:gpt-4o", prices) == (3.0, 12.0)
    assert price_of("gpt-4o", prices) == KNOWN_PRICES["gpt-4o"]
    assert cost_usd("my-model", 1_000_000, 1_000_000, prices) == pytest.approx(3.5)


@pytest.mark.parametrize(
    "config",
    [
        '[prices."my-model"]\ninput = "cheap"\n',
        "[prices]\nmy-model = 0.5\n",
        # an unquoted dot makes a nested table: [prices.gpt-4] with a key "1"
        "[prices.gpt-4.1]\ninput = 1\noutput = 2\n",
    ],
)
def test_malformed_price_config_is_a_one_line_error(config: str) -> None:
    write_config(config)
    with pytest.raises(UserInputError) as exc:
        Config.load()
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(".loopengt/config.toml: [prices.")
    assert 'quote names with dots: [prices."gpt-4.1"]' in message


def test_malformed_price_config_fails_at_compile_time_not_mid_run() -> None:
    write_config('[llm]\nbase_url = "http://127.0.0.1:9/v1"\n[prices."my-model"]\ninput = "x"\n')
    with pytest.raises(UserInputError, match=r"\[prices\.my-model\] must hold numbers"):
        compile_spec(load_spec_text(SPEC.replace("MODEL", "my-model")))


# -- cost in a run's state -------------------------------------------------------------------

SPEC = textwrap.dedent("""
    name: priced
    goal: Write twice.
    agents:
      - {name: writer, model: "openai:MODEL"}
    steps:
      - {name: first, agent: writer, prompt: Write one two three.}
      - {name: second, agent: writer, prompt: "Shorten {{first}}", depends_on: [first]}
""")


def run_with_server(model: str, config: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    replies = ["four five six seven", "eight"]
    with ScriptedOpenAIServer(replies) as server:
        write_config(f'[llm]\nbase_url = "{server.base_url}"\n{config}')
        state = compile_spec(load_spec_text(SPEC.replace("MODEL", model))).invoke({"input": {}})
        requests = server.requests
    assert state["status"] == "completed"
    assert [r["model"] for r in requests] == [model, model]  # the server answers as `model`
    return state, requests


def test_run_cost_uses_the_model_the_server_answered_as() -> None:
    state, _ = run_with_server("gpt-4o-mini-2024-07-18")
    usage = state["usage"]
    assert usage["model_calls"] == 2
    assert usage["output_tokens"] == 4 + 1  # the scripted server counts words
    assert usage["input_tokens"] > 0
    expected = (usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected)
    assert usage["cost_usd"] > 0


def test_run_cost_of_a_configured_price() -> None:
    state, _ = run_with_server(
        "served-model", '[prices."served-model"]\ninput = 1000\noutput = 0\n'
    )
    usage = state["usage"]
    assert usage["cost_usd"] == pytest.approx(usage["input_tokens"] * 1000 / 1e6)


def test_run_of_an_unpriced_model_counts_tokens_at_no_cost() -> None:
    state, _ = run_with_server("served-model")
    assert state["usage"]["total_tokens"] > 0
    assert state["usage"]["cost_usd"] == 0.0


def test_cost_of_an_injected_model_comes_from_its_reply_metadata() -> None:
    reply = AIMessage(
        "done",
        response_metadata={"model_name": "claude-sonnet-4-20250514"},
        usage_metadata={"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200},
    )
    model = FakeMessagesListChatModel(responses=[reply, reply])
    state = compile_spec(load_spec_text(SPEC), models=model).invoke({"input": {}})
    assert state["usage"]["total_tokens"] == 2400
    assert state["usage"]["cost_usd"] == pytest.approx(2 * (1000 * 3.0 + 200 * 15.0) / 1e6)
