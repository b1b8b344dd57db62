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
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel

from loopengt.config import Config
from loopengt.errors import UserInputError

NO_MODEL = (
    "no model configured: set 'model:' on the agent or 'defaults.model' in the spec, "
    "'[llm] model' in .loopengt/config.toml, or LOOPENGT_MODEL (e.g. openai:gpt-4o-mini), "
    "or install the embedded local model with `pip install 'loopengt[local]'`"
)

# (model name after "provider:", temperature, config) -> a chat model
Factory = Callable[[str, float | None, Config], BaseChatModel]


def default_model_name(config: Config | None = None) -> str | None:
    """The model for agents the spec leaves without one: config, env, then `local`."""
    name = (config or Config.load()).default_model
    if name:
        return name
    from loopengt.providers.local import local_model_available

    return "local" if local_model_available() else None


def resolve_model(
    name: str | None, *, temperature: float | None = None, config: Config | None = None
) -> BaseChatModel:
    """The chat model a `provider:model` string names (None: the configured default)."""
    config = config or Config.load()
    name = name or default_model_name(config)
    if not name:
        raise UserInputError(NO_MODEL)
    provider, _, model = name.partition(":")
    factory = PROVIDERS.get(provider)
    if factory is None:
        known = ", ".join(PROVIDERS)
        if not model:
            raise UserInputError(
                f"model {name!r} names no provider: write 'provider:model', "
                f"e.g. 'openai:{name}' (providers: {known})"
            )
        raise UserInputError(f"unknown model provider {provider!r} in {name!r}; use one of {known}")
    return with_max_tokens(factory(model, temperature, config), _config_cap(config))


def _config_cap(config: Config) -> int | None:
    """`[llm] max_tokens`, the cap of every model the spec does not cap itself."""
    value = config.llm.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


DEFAULT_MAX_TOKENS = 4096
"""The output cap of an `openai:` model when neither the spec nor `[llm] max_tokens` sets one:
an OpenAI-compatible server without a cap may generate until its context is full."""


def with_max_tokens(model: BaseChatModel, max_tokens: int | None) -> BaseChatModel:
    """``model`` capped at ``max_tokens`` output tokens, for chat models that have the
    setting (OpenAI, Anthropic, the local model); others are returned as they are."""
    if max_tokens is None or "max_tokens" not in type(model).model_fields:
        return model
    update: dict[str, Any] = {"max_tokens": max_tokens}
    extra = getattr(model, "extra_body", None)
    if isinstance(extra, dict) and "max_tokens" in extra:
        update["extra_body"] = {**extra, "max_tokens": max_tokens}
    return model.model_copy(update=update)


def register_provider(name: str, factory: Factory) -> None:
    """Make `name:MODEL` strings resolve through ``factory`` (a plugin's own provider)."""
    PROVIDERS[name] = factory


def _named(provider: str, model: str) -> str:
    if not model:
        raise UserInputError(f"model '{provider}:' names no model: write '{provider}:MODEL'")
    return model


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


def _openai(model: str, temperature: float | None, config: Config) -> BaseChatModel:
    settings = config.provider("openai")
    model = _named("openai", model)
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
        "max_tokens": int(settings.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    if base_url:
        kwargs["base_url"] = base_url
        # langchain-openai sends the cap as OpenAI's `max_completion_tokens`, which some
        # compatible servers (llama-cpp-python's) ignore: send their `max_tokens` too
        kwargs["extra_body"] = {"max_tokens": kwargs["max_tokens"]}
    if temperature is not None:
        kwargs["temperature"] = temperature
    # an async client of its own: langchain-openai shares one per base_url in the process,
    # whose pooled connections belong to the first event loop that used them, so a second
    # run (a new `asyncio.run`) would fail with "Event loop is closed"
    import httpx

    kwargs["http_async_client"] = httpx.AsyncClient(timeout=None)
    return chat(**kwargs)  # type: ignore[no-any-return]


def _anthropic(model: str, temperature: float | None, config: Config) -> BaseChatModel:
    settings = config.provider("anthropic")
    model = _named("anthropic", model)
    chat = _chat_class("anthropic", "langchain_anthropic", "ChatAnthropic")
    api_key = _api_key("anthropic", settings, "ANTHROPIC_API_KEY", local_ok=False)
    kwargs: dict[str, Any] = {"model": model, "api_key": api_key, "max_retries": 0}
    if settings.get("base_url"):
        kwargs["base_url"] = settings["base_url"]
    if temperature is not None:
        kwargs["temperature"] = temperature
    return chat(**kwargs)  # type: ignore[no-any-return]


def _ollama(model: str, temperature: float | None, config: Config) -> BaseChatModel:
    settings = config.provider("ollama")
    model = _named("ollama", model)
    chat = _chat_class("ollama", "langchain_ollama", "ChatOllama")
    kwargs: dict[str, Any] = {"model": model}
    base_url = settings.get("base_url") or os.environ.get("OLLAMA_HOST")
    if base_url:
        kwargs["base_url"] = base_url
    if temperature is not None:
        kwargs["temperature"] = temperature
    return chat(**kwargs)  # type: ignore[no-any-return]


def _local(model: str, temperature: float | None, config: Config) -> BaseChatModel:
    from loopengt.providers.local import local_chat_model

    return local_chat_model(model or None, temperature=temperature, threads=config.local_threads)


def _test(model: str, temperature: float | None, config: Config) -> BaseChatModel:
    from loopengt.providers.testing import test_model

    return test_model(model)


PROVIDERS: dict[str, Factory] = {  # every one of providers.PROVIDER_NAMES
    "openai": _openai,
    "anthropic": _anthropic,
    "ollama": _ollama,
    "local": _local,
    "test": _test,
}
