"""The real ChatOpenAI client pointed at a scripted OpenAI-compatible server."""

from __future__ import annotations

from langchain_openai import ChatOpenAI

from tests.support.openai_server import ScriptedOpenAIServer


def chat_model(server: ScriptedOpenAIServer) -> ChatOpenAI:
    return ChatOpenAI(api_key="test", base_url=server.base_url, model="test-model", max_retries=0)
