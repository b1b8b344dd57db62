"""Long-term memory through the real parts: `loopengt run` processes against a local
OpenAI-compatible server whose model calls the memory tools; the store is SQLite in the
project (and PostgreSQL beside the PostgreSQL checkpointer)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.openai_server import ScriptedOpenAIServer, ToolCallReply

FACT = "The launch code word is PELICAN."


def spec(root: Path, name: str) -> str:
    (root / f"{name}.yaml").write_text(
        textwrap.dedent(f"""\
            name: {name}
            goal: Keep and use facts.
            agents: [{{name: keeper, instructions: You keep facts., memory: true}}]
            steps: [{{name: work, prompt: "Do the task."}}]
            policy: {{max_turns: 4}}
            """)
    )
    return f"{name}.yaml"


def configure(root: Path, base_url: str, checkpointer: str | None = None) -> None:
    (root / ".loopengt").mkdir(exist_ok=True)
    storage = f'[storage]\ncheckpointer = "{checkpointer}"\n' if checkpointer else ""
    (root / ".loopengt" / "config.toml").write_text(
        f'[llm]\nmodel = "openai:m"\nbase_url = "{base_url}"\n{storage}'
    )


def tool_results(request: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in request["messages"] if m["role"] == "tool"]


def remember_then_recall(root: Path, checkpointer: str | None = None) -> list[dict[str, Any]]:
    replies = [
        ToolCallReply("remember", {"text": FACT}),
        "Kept.",
        ToolCallReply("recall", {"query": "launch code"}),
        "It is PELICAN.",
        ToolCallReply("recall", {"query": "launch code"}),
        "I know nothing.",
    ]
    with ScriptedOpenAIServer(replies) as server:
        configure(root, server.base_url, checkpointer)
        first = run_cli(root, "run", spec(root, "keeper"))  # one process
        assert first.returncode == 0, first.stdout + first.stderr
        second = run_cli(root, "run", "keeper.yaml", "--json")  # a new process
        assert second.returncode == 0, second.stdout + second.stderr
        assert json.loads(second.stdout)["outputs"]["work"] == "It is PELICAN."
        other = run_cli(root, "run", spec(root, "stranger"))  # another spec
        assert other.returncode == 0, other.stdout + other.stderr
        return server.requests


def test_a_fact_remembered_in_one_run_is_recalled_in_the_next(tmp_path: Path) -> None:
    requests = remember_then_recall(tmp_path)
    assert tool_results(requests[1])[0].startswith("remembered as ")
    assert FACT in tool_results(requests[3])[0]
    assert tool_results(requests[5]) == ["nothing remembered matches"]  # specs are apart
    assert (tmp_path / ".loopengt" / "memory.db").is_file()
    offered = {t["function"]["name"] for t in requests[0]["tools"]}
    assert offered == {"remember", "recall", "forget"}


def test_memory_lives_in_postgresql_beside_its_checkpointer(
    tmp_path: Path, postgres_url: str
) -> None:
    requests = remember_then_recall(tmp_path, postgres_url)
    assert FACT in tool_results(requests[3])[0]
    assert tool_results(requests[5]) == ["nothing remembered matches"]
    assert not (tmp_path / ".loopengt" / "memory.db").exists()


def test_forget_removes_a_fact(tmp_path: Path) -> None:
    from langgraph.graph import START, StateGraph
    from langgraph.store.memory import InMemoryStore

    from loopengt.memory import memory_tools

    remember, recall, forget = memory_tools("s", "a")
    seen: dict[str, str] = {}

    def node(state: dict[str, Any]) -> dict[str, Any]:
        key = remember.invoke({"text": FACT}).split()[-1]
        seen["before"] = recall.invoke({"query": "launch"})
        forget.invoke({"key": key})
        seen["after"] = recall.invoke({"query": "launch"})
        return {}

    graph: Any = StateGraph(dict)
    graph.add_node("n", node)
    graph.add_edge(START, "n")
    graph.compile(store=InMemoryStore()).invoke({"x": 1})
    assert FACT in seen["before"] and seen["after"] == "nothing remembered matches"


@pytest.mark.slow
def test_memory_tools_run_on_the_embedded_model(tmp_path: Path) -> None:
    # it calls tools through a grammar (providers/local_grammar.py); it was refused before
    pytest.importorskip("llama_cpp")
    result = run_cli(tmp_path, "run", spec(tmp_path, "keeper"), "--model", "local")
    assert result.returncode == 0, result.stderr
