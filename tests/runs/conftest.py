"""Fixtures of the run tests."""

from collections.abc import Iterator

import pytest

from tests.support.openai_server import ScriptedOpenAIServer, echo_responder


@pytest.fixture
def echo_server() -> Iterator[ScriptedOpenAIServer]:
    """A scripted OpenAI-compatible server that echoes each prompt back."""
    with ScriptedOpenAIServer(responder=echo_responder) as server:
        yield server
