"""Secrets never reach a file we write (traces, cassettes) or a message we print.

A secret is the value of an environment variable named like a credential (`*_KEY`,
`*_TOKEN`, `*_SECRET`, `*_PASSWORD`), plus anything shaped like a provider key (`sk-…`) or
a bearer token, even when it came from somewhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "[redacted]"
SECRET_NAME = re.compile(r"(_KEY|_TOKEN|_SECRET|_PASSWORD)$", re.IGNORECASE)
# shorter values are not secrets worth hiding, and would blank out ordinary words
MIN_SECRET_LENGTH = 6
# provider keys (sk-..., sk-proj-..., sk-ant-...: long and with digits) and bearer tokens
_SK_KEY = re.compile(r"\bsk-(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{16,}")
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{7,}[A-Za-z0-9_~+/=-]")  # not a final "."


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)  # longest first: a key containing another


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
        return value
    if isinstance(value, Mapping):
        return {redact(k, known): redact(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, known) for v in value]
    return value
