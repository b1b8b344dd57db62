"""The recorder swallows its own exceptions (a tracing bug must not break a run), so the
tests watch LangChain's log for them instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_callback_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    errors = [r.getMessage() for r in caplog.records if "callback" in r.getMessage()]
    assert not errors, errors
