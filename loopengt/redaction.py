"""Secrets never reach a file we write (traces, cassettes) or a message we print.

A secret is the value of an environment variable named like a credential (`*_KEY`,
`*_TOKEN`, `*_SECRET`, `*_PASSWORD`) or the password of a URL held in any variable
(`OPENAI_BASE_URL=http://user:PASSWORD@host/v1`), plus anything shaped like a provider key
(`sk-…`), a bearer token or Basic credentials, a URL's password and a URL query parameter
named like a key (`?api_key=…`), even when it came from somewhere else (a config file).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

REDACTED = "[redacted]"
SECRET_NAME = re.compile(r"(_KEY|_TOKEN|_SECRET|_PASSWORD)$", re.IGNORECASE)
# shorter values are not secrets worth hiding, and would blank out ordinary words
MIN_SECRET_LENGTH = 6
# provider keys (sk-..., sk-proj-..., sk-ant-...: long and with digits) and bearer tokens
_SK_KEY = re.compile(r"\bsk-(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{16,}")
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{7,}[A-Za-z0-9_~+/=-]")  # not a final "."
# Basic credentials: base64 of "user:password" (checked by decoding, so "Basic Instructions"
# stays as it is)
_BASIC = re.compile(r"\b(Basic\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
# a URL's password: scheme://user:PASSWORD@host (the user name is kept)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@'\"<>]*:)([^\s/?#@'\"<>]+)@")
# a query parameter named like a credential: ?api_key=…, &access_token=…, &sig=…
_QUERY_SECRET = re.compile(
    r"([?&](?:[A-Za-z0-9]+[_.-])*(?:api[_-]?key|apikey|key|token|secret|password|passwd|pwd"
    r"|auth|sig|signature|credentials?)=)([^&#\s'\"<>]+)",
    re.IGNORECASE,
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k)}
    # a password in a URL variable (OPENAI_BASE_URL, DATABASE_URL, ...) may show up alone
    values.update(p for v in env.values() if "://" in v for p in _url_secrets(v))
    values = {v for v in values if len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)  # longest first: a key containing another


def _url_secrets(text: str) -> set[str]:
    """The passwords and credential-named query values of the URLs in ``text``."""
    found = {m.group(2) for m in _URL_PASSWORD.finditer(text)}
    found.update(m.group(2) for m in _QUERY_SECRET.finditer(text))
    return found | {unquote(v) for v in found}


def hide_known(text: str) -> str:
    """``text`` with the environment's secrets replaced, and nothing else changed: for data a
    run goes on with (a tool's result), where redact()'s patterns would alter ordinary URLs."""
    for secret in secret_values():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any, known: Sequence[str] | None = None) -> Any:
    """``value`` (any JSON-like structure) with every secret replaced in every string;
    ``known`` defaults to the secrets in the environment now."""
    known = secret_values() if known is None else known
    if isinstance(value, str):
        for secret in known:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if "sk-" in value:  # a substring test first: most strings hold neither pattern
            value = _SK_KEY.sub(REDACTED, value)
        if "Bearer" in value:
            value = _BEARER.sub(rf"\g<1>{REDACTED}", value)
        if "Basic" in value:
            value = _BASIC.sub(_basic, value)
        if "@" in value and "://" in value:
            value = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", value)
        if "=" in value and ("?" in value or "&" in value):
            value = _QUERY_SECRET.sub(rf"\g<1>{REDACTED}", value)
        return value
    if isinstance(value, Mapping):
        return {redact(k, known): redact(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, known) for v in value]
    return value


def _basic(match: re.Match[str]) -> str:
    """``Basic <base64 of user:password>`` with the credentials replaced; other text kept."""
    try:
        decoded = base64.b64decode(match.group(2), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return match.group(0)
    if ":" in decoded and decoded.isprintable():
        return match.group(1) + REDACTED
    return match.group(0)
