"""One-line explanations of model-call failures: which provider, what happened, what to do.

Provider SDK errors (openai, anthropic, httpx for ollama) carry the status code and request
but print as long multi-line blobs; a run's stop reason needs one line a user can act on.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any

from loopengt.config import Config
from loopengt.errors import LoopengtError
from loopengt.redaction import redact, secret_values

# top-level module of an exception class -> provider. langchain-openai (>= 1.x) re-raises the
# SDK's errors as its own subclasses (`langchain_openai...OpenAIRateLimitError`), so the whole
# MRO is searched; httpx errors come from the ollama client.
_PROVIDER_MODULES = {
    "openai": "openai",
    "langchain_openai": "openai",
    "anthropic": "anthropic",
    "langchain_anthropic": "anthropic",
    "ollama": "ollama",
    "langchain_ollama": "ollama",
    "httpx": "ollama",
}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

RESUME_HINTS: ContextVar[bool] = ContextVar("loopengt_resume_hints", default=True)
"""Whether reasons may suggest `loopengt resume`: not where the user has no such command (a
run served by the LangGraph server: `loopengt studio` sets it False around its loop)."""


def _provider(exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        provider = _PROVIDER_MODULES.get(cls.__module__.split(".")[0])
        if provider:
            return provider
    return None


def _key_env(provider: str, config: Config | None) -> str | None:
    """The variable the provider's key is read from (config `api_key_env`, else default)."""
    try:
        configured = (config or Config.load()).provider(provider).get("api_key_env")
    except LoopengtError:  # an unreadable config must not hide the original error
        configured = None
    return str(configured) if configured else DEFAULT_KEY_ENV.get(provider)


def _redact(text: str, config: Config | None) -> str:
    """Servers may echo the key they were sent; keys never appear in messages. The key
    variables a config names need not look like credentials, so they count too."""
    known = set(secret_values())
    for provider in DEFAULT_KEY_ENV:
        name = _key_env(provider, config)
        secret = os.environ.get(name) if name else None
        if secret and len(secret) >= 4:
            known.add(secret)
    return str(redact(text, sorted(known, key=len, reverse=True)))


def _url(exc: BaseException) -> str | None:
    try:
        request: Any = getattr(exc, "request", None)
        url = str(request.url) if request is not None else None
    except RuntimeError:  # httpx's `.request` raises when an error has none attached
        return None
    if not url:
        return None
    # the endpoint path ("/chat/completions") says nothing the user configured
    for suffix in ("/chat/completions", "/messages", "/api/chat"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def explain_model_error(exc: BaseException, config: Config | None = None) -> str:
    """A one-line reason for ``exc``; errors of our own keep their message. ``config``
    names the key variables (default: the working directory's)."""
    if isinstance(exc, LoopengtError):
        return str(exc)
    return _redact(_explain(exc, config), config)


def _explain(exc: BaseException, config: Config | None) -> str:
    provider = _provider(exc)
    if provider is None:
        return _first_line(exc)
    url = _url(exc)
    at = f" at {url}" if url else ""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if status == 401 or name.endswith("AuthenticationError"):
        key_env = _key_env(provider, config) or f"{provider.upper()}_API_KEY"
        return (
            f"{provider}: the server{at} rejected the API key (401 unauthorized); check "
            f"{key_env} (the variable named by [llm] api_key_env)"
        )
    if status == 403:
        return f"{provider}: access denied{at} (403); the key lacks access to this model"
    if status == 404:
        return f"{provider}: not found{at} (404); check the model name and [llm] base_url"
    if status == 429:
        return (
            f"{provider}: rate limited{at} (429) after the policy's retries; retry later, "
            "raise policy.retry, or lower fan_out.max_concurrency"
        )
    said = server_text(exc)
    if isinstance(status, int) and status >= 500 and not refused(exc):
        retry = " with `loopengt resume RUN_ID`" if RESUME_HINTS.get() else ""
        return (
            f"{provider}: server error {status}{at} after the policy's retries: {said}; the "
            f"server is failing — retry later{retry}"
        )
    if isinstance(status, int):
        return f"{provider}: request refused{at} ({status}): {said}"
    if "Timeout" in name:
        return f"{provider}: no answer{at} in time; is the server overloaded?"
    cut = dropped(exc)
    if cut is not None:
        retry = " with `loopengt resume RUN_ID`" if RESUME_HINTS.get() else ""
        return (
            f"{provider}: the server{at} closed the connection before the reply was complete "
            f"({cut}) after the policy's retries; the server or a proxy is failing — retry "
            f"later{retry}"
        )
    if "Connect" in name or isinstance(exc, ConnectionError):
        return (
            f"{provider}: cannot reach the server{at}; is it running? "
            "check [llm] base_url (or OPENAI_BASE_URL / OLLAMA_HOST)"
        )
    return f"{provider}: {name}: {_first_line(exc)}"


# the transport's errors once the server was reached: the exchange broke off mid-way (httpx,
# httpcore, aiohttp, the standard library); a refused or unresolvable connection is not one
_DROPPED = frozenset(
    {
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "ConnectionResetError",
        "BrokenPipeError",
        "IncompleteRead",
        "ServerDisconnectedError",
        "ClientPayloadError",
    }
)
_UNREACHED = frozenset(
    {"ConnectError", "ConnectTimeout", "ConnectionRefusedError", "gaierror", "ClientConnectorError"}
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it: SDKs wrap the transport's error (openai's
    APIConnectionError holds httpx's, which holds httpcore's, ...)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def dropped(exc: BaseException) -> str | None:
    """What the transport said when the server was reached but the connection broke off
    before the reply was complete (reset, closed mid-body or mid-stream), else None. SDKs
    report this as a connection error, which is not "cannot reach the server"."""
    chain = _chain(exc)
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    if names & _UNREACHED or not names & _DROPPED:
        return None
    for error in reversed(chain):  # the innermost error says what happened
        text = " ".join(str(error).split())
        if text:
            return re.sub(r"^\[Errno \d+\] ", "", text)[:200]
    return next(type(e).__name__ for e in chain if type(e).__name__ in _DROPPED)


# what servers say when the request itself is wrong, even under a 500 (llama-cpp-python's
# server answers an unsupported response_format with a 500 carrying pydantic's message)
_INVALID = re.compile(
    r"input should be|validation error|invalid|not supported|unsupported|must be one of"
    r"|maximum context length|exceeds the context|context window",
    re.IGNORECASE,
)


def refused(exc: BaseException) -> bool:
    """Whether the server refused the request itself (400/422, or a 500 whose text says the
    request is invalid): asking again the same way cannot succeed, so it is not retried."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return False
    if 400 <= status < 500:
        return status not in (401, 403, 404, 408, 409, 429)
    return status >= 500 and bool(_INVALID.search(server_text(exc)))


def server_text(exc: BaseException) -> str:
    """The server's own message: ``error.message`` (or ``message``/``detail``) of the body an
    OpenAI-compatible server sent, else the error's first line."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        for key in ("message", "detail"):
            value = inner.get(key) if isinstance(inner, dict) else None
            if value:
                return " ".join(str(value).split())[:500]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    # the first line that says something: some messages start with a newline
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
