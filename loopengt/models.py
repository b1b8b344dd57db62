"""`provider:model` strings -> LangChain chat models.

Resolution order for a name that is not given: `.loopengt/config.toml` `[llm] model`, then
the `LOOPENGT_MODEL` environment variable. Keys come from the environment only.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel

from loopengt.config import config_section
from loopengt.errors import UserInputError

NO_MODEL = (
    "no model configured: set 'model:' on the agent or 'defaults.model' in the spec, "
    "'[llm] model' in .loopengt/config.toml, or LOOPENGT_MODEL (e.g. openai:gpt-4o-mini)"
)


def resolve_model(name: str | None, *, temperature: float | None = None) -> BaseChatModel:
    llm = config_section("llm")
    name = name or llm.get("model") or os.environ.get("LOOPENGT_MODEL")
    if not name:
        raise UserInputError(NO_MODEL)
    provider, _, model = name.partition(":")
    if provider == "openai":
        return _openai(model, temperature, llm)
    raise UserInputError(f"model provider {provider!r} is not supported yet (use openai:MODEL)")


def _openai(model: str, temperature: float | None, llm: dict[str, Any]) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    base_url = llm.get("base_url") or os.environ.get("OPENAI_BASE_URL")
    key_env = llm.get("api_key_env", "OPENAI_API_KEY")
    api_key = os.environ.get(key_env)
    if not api_key:
        if not base_url:
            raise UserInputError(
                f"openai: {key_env} is not set; export it, or set [llm] base_url for a "
                "local OpenAI-compatible server"
            )
        api_key = "unused"  # local OpenAI-compatible servers accept any key
    kwargs: dict[str, Any] = {"model": model, "api_key": api_key, "max_retries": 0}
    if base_url:
        kwargs["base_url"] = base_url
    if temperature is not None:
        kwargs["temperature"] = temperature
    return ChatOpenAI(**kwargs)
