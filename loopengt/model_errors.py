"""One-line explanations of model-call failures: which provider, what happened, what to do.

Provider SDK errors (openai, anthropic, httpx for ollama) carry the status code and request
but print as long multi-line blobs; a run's stop reason needs one line a user can act on.
"""

from __future__ import annotations

from typing import Any

from loopengt.errors import LoopengtError


def _provider(exc: BaseException) -> str:
    module = type(exc).__module__.split(".")[0]
    return {"openai": "openai", "anthropic": "anthropic", "httpx": "ollama"}.get(module, module)


def _url(exc: BaseException) -> str | None:
    request: Any = getattr(exc, "request", None)
    try:
        url = str(request.url) if request is not None else None
    except RuntimeError:  # httpx raises when an error has no request attached
        return None
    if not url:
        return None
    # the endpoint path ("/chat/completions") says nothing the user configured
    for suffix in ("/chat/completions", "/messages", "/api/chat"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def explain_model_error(exc: BaseException) -> str:
    """A one-line reason for ``exc``; errors of our own keep their message."""
    if isinstance(exc, LoopengtError):
        return str(exc)
    provider = _provider(exc)
    if provider not in ("openai", "anthropic", "ollama"):
        return _first_line(exc)
    url = _url(exc)
    at = f" at {url}" if url else ""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if status == 401 or name == "AuthenticationError":
        return (
            f"{provider}: the server{at} rejected the API key (401 unauthorized); check the "
            f"key variable ([llm] api_key_env, default {provider.upper()}_API_KEY)"
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
    if isinstance(status, int) and status >= 500:
        return (
            f"{provider}: server error {status}{at} after the policy's retries; the server "
            "is failing — retry later with `loopengt resume RUN_ID`"
        )
    if isinstance(status, int):
        return f"{provider}: request refused{at} ({status}): {_first_line(exc)}"
    if "Timeout" in name:
        return f"{provider}: no answer{at} in time; is the server overloaded?"
    if "Connect" in name or isinstance(exc, ConnectionError):
        return (
            f"{provider}: cannot reach the server{at}; is it running? "
            "check [llm] base_url (or OPENAI_BASE_URL / OLLAMA_HOST)"
        )
    return f"{provider}: {name}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
