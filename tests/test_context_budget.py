"""`policy.context_budget` through the real `ChatOpenAI` client against a local
OpenAI-compatible server: a 30-round tool loop whose history grows, with and without a
budget, every request's messages counted from the server's log with the counter the budget
uses."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)

from loopengt import compile_spec
from loopengt.config import Config
from loopengt.graph.context_budget import SUMMARY_HEAD, SUMMARY_PROMPT, ContextBudget, count_tokens
from loopengt.spec import SpecError, load_spec_text
from tests.support.openai_server import ScriptedOpenAIServer, ToolCallReply

ROUNDS = 30
NOTES = "Owls hunt at night and see well in the dark. " * 40  # ~450 tokens a read


def spec(budget: int | None, mode: str = "trim") -> str:
    policy = f", context_budget: {budget}, context_mode: {mode}" if budget else ""
    return textwrap.dedent(f"""\
        name: reader
        goal: Read the notes many times.
        tools: [{{name: read_file, kind: builtin}}]
        agents:
          - {{name: a, instructions: You read notes., tools: [read_file], max_tool_calls: 40}}
        steps: [{{name: read, prompt: "Read notes.txt until you know it."}}]
        policy: {{max_turns: 4{policy}}}
        """)


def run(root: Path, text: str) -> tuple[dict[str, Any], list[int], list[list[Any]]]:
    """The final state, the tokens of each request's messages, and the messages."""
    made = [0]

    def answer(request: dict[str, Any]) -> Any:
        if request["messages"][0]["content"] == SUMMARY_PROMPT:
            return "A short summary."
        made[0] += 1
        return (
            ToolCallReply("read_file", {"path": "notes.txt"}) if made[0] <= ROUNDS else "I know it."
        )

    with ScriptedOpenAIServer(responder=answer) as server:
        (root / ".loopengt").mkdir(exist_ok=True)
        (root / ".loopengt" / "config.toml").write_text(
            f'[llm]\nmodel = "openai:m"\nbase_url = "{server.base_url}"\n'
        )
        graph = compile_spec(load_spec_text(text), config=Config.load(root))
        state = graph.invoke({"input": {}})
        sent = [convert_to_messages(r["messages"]) for r in server.requests]
    return state, [count_tokens(m) for m in sent], sent


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "notes.txt").write_text(NOTES)
    monkeypatch.chdir(tmp_path)  # read_file reads inside the working directory
    return tmp_path


def test_every_call_fits_the_budget_and_the_total_grows_linearly(root: Path) -> None:
    free, free_tokens, _ = run(root, spec(None))
    bounded, tokens, sent = run(root, spec(2000))
    assert free["status"] == bounded["status"] == "completed"
    assert bounded["outputs"]["read"] == "I know it."
    assert len(tokens) == len(free_tokens) == ROUNDS + 1
    assert max(free_tokens) > 10_000  # without a budget the history keeps growing
    assert max(tokens) <= 2000
    for messages in sent:  # the system prompt and the task always, each call with its result
        assert isinstance(messages[0], SystemMessage)
        assert messages[1].text == "Read notes.txt until you know it."
        calls = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
        results = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        assert calls == results
    # linear: the second half of the run costs about what the first did (quadratic: ~3x)
    half = len(tokens) // 2
    assert sum(tokens[half:]) < 1.5 * sum(tokens[:half])
    assert sum(free_tokens[half:]) > 2.5 * sum(free_tokens[:half])


def test_summarize_condenses_the_dropped_turns_with_one_traced_call(root: Path) -> None:
    state, tokens, sent = run(root, spec(2000, "summarize"))
    assert state["status"] == "completed"
    summaries = [m for m in sent if isinstance(m[0], SystemMessage) and m[0].text == SUMMARY_PROMPT]
    assert summaries, "no summarizing call was made"
    assert max(tokens) <= 2000
    after = [m for m in sent if any(SUMMARY_HEAD in str(x.content) for x in m)]
    assert after and all(isinstance(m[1], HumanMessage) for m in after)
    assert len(sent) == ROUNDS + 1 + len(summaries)  # each summary is one more call


def test_the_newest_message_alone_over_the_budget_is_cut_not_dropped() -> None:
    budget = ContextBudget(64)
    kept, dropped = budget.split([SystemMessage("Be brief."), HumanMessage("word " * 400)])
    assert isinstance(kept[-1], HumanMessage) and count_tokens(kept) <= 64
    assert dropped == []


def test_a_budget_smaller_than_a_prompt_is_a_spec_error() -> None:
    text = spec(40).replace("Read notes.txt until you know it.", "Read the notes. " * 20)
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, filename="reader.yaml")
    assert "policy.context_budget: 40 tokens cannot hold the prompt of step 'read'" in str(
        caught.value
    )
