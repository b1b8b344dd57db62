"""Mount a compiled LoopSpec as one node of a hand-written LangGraph app.

    uv run python examples/mount_in_app.py            # uses your configured model
    uv run python examples/mount_in_app.py --offline  # a canned fake model, no network

The app normalises a question, hands it to the research-brief loop (a compiled LoopSpec
running as a subgraph), then formats the loop's outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import END, START, StateGraph

import loopengt

SPEC = Path(__file__).with_name("research-brief.yaml")


class AppState(TypedDict, total=False):
    question: str
    brief: str
    title: str


def build_app(model: BaseChatModel | None = None) -> Any:
    loop = loopengt.compile_spec(SPEC, models=model)

    def normalise(state: AppState) -> AppState:
        return {"question": state["question"].strip().rstrip("?")}

    def run_loop(state: AppState) -> AppState:
        # map the app's state onto the loop's input, and its outputs back
        result = loop.invoke({"input": {"topic": state["question"]}})
        outputs = result.get("outputs", {})
        return {"brief": outputs.get("draft", ""), "title": outputs.get("title", "")}

    app = StateGraph(AppState)
    app.add_node("normalise", normalise)
    app.add_node("research_brief", run_loop)
    app.add_edge(START, "normalise")
    app.add_edge("normalise", "research_brief")
    app.add_edge("research_brief", END)
    return app.compile()


def main() -> None:
    model = None
    if "--offline" in sys.argv:
        model = FakeListChatModel(
            responses=["1. fact one\n2. fact two", "A short brief.", "A Title"]
        )
    state = build_app(model).invoke({"question": "  What is WebAssembly? "})
    print(f"# {state['title']}\n\n{state['brief']}")


if __name__ == "__main__":
    main()
