"""Tokens per model call of a 30-round loop whose history grows, with `policy.context_budget`.

    uv run python benchmarks/context_budget.py [--rounds 30] [--budget 2000] [--quick] [--json]

A step whose agent calls a tool ``--rounds`` times (each tool result ~450 tokens), run
through the real `ChatOpenAI` client against a local OpenAI-compatible server
(`tests.support.openai_server`) that keeps every request. Each request's messages are
counted with the counter the budget uses (`count_tokens_approximately`). Baseline: the same
loop without a budget, whose every call carries the whole history (total tokens grow with
the square of the rounds). Rows:

- ``context_budget_max_call_tokens``: the largest call with the budget. Target: ≤ the
  budget (baseline: the largest call without it).
- ``context_budget_growth``: tokens sent in the second half of the run over the first half.
  Target ≤ 1.5 (linear growth gives ~1; without a budget, quadratic growth gives ~3).

(The evaluator-optimizer pattern does not carry a growing history — each iteration's
prompt holds the latest draft and feedback — so a tool loop is the loop that needs a budget.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from common import Row, emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: tests.support

NOTES = "Owls hunt at night and see well in the dark. " * 40


def spec(budget: int | None) -> str:
    policy = f", context_budget: {budget}" if budget else ""
    return textwrap.dedent(f"""\
        name: reader
        goal: Read the notes many times.
        tools: [{{name: read_file, kind: builtin}}]
        agents:
          - {{name: a, instructions: You read notes., tools: [read_file], max_tool_calls: 100}}
        steps: [{{name: read, prompt: "Read notes.txt until you know it."}}]
        policy: {{max_turns: 4{policy}}}
        """)


def measure(rounds: int, budget: int | None) -> list[int]:
    """The tokens of each request's messages."""
    from langchain_core.messages import convert_to_messages

    from loopengt import compile_spec
    from loopengt.config import Config
    from loopengt.graph.context_budget import count_tokens
    from loopengt.spec import load_spec_text
    from tests.support.openai_server import ScriptedOpenAIServer, ToolCallReply

    replies: list[Any] = [ToolCallReply("read_file", {"path": "notes.txt"})] * rounds
    with tempfile.TemporaryDirectory() as folder, ScriptedOpenAIServer([*replies, "Done."]) as srv:
        root = Path(folder)
        (root / "notes.txt").write_text(NOTES)
        (root / ".loopengt").mkdir()
        (root / ".loopengt" / "config.toml").write_text(
            f'[llm]\nmodel = "openai:m"\nbase_url = "{srv.base_url}"\n'
        )
        here = os.getcwd()
        os.chdir(root)  # read_file reads inside the working directory
        try:
            state = compile_spec(load_spec_text(spec(budget)), config=Config.load(root)).invoke(
                {"input": {}}
            )
        finally:
            os.chdir(here)
        if state["status"] != "completed":
            raise SystemExit(f"the loop ended {state['status']}: {state.get('stop_reason')}")
        return [count_tokens(convert_to_messages(r["messages"])) for r in srv.requests]


def growth(tokens: list[int]) -> float:
    half = len(tokens) // 2
    return sum(tokens[half:]) / sum(tokens[:half])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 8 rounds, no verdict")
    parser.add_argument("--json", action="store_true", help="print only the rows, as JSON")
    args = parser.parse_args()
    rounds, judged = (8, False) if args.quick else (args.rounds, True)
    free, bounded = measure(rounds, None), measure(rounds, args.budget)
    note = f"{rounds} rounds; total {sum(bounded)} vs {sum(free)} tokens without the budget"
    rows = [
        Row(
            "context_budget_max_call_tokens",
            "tokens",
            max(free),
            max(bounded),
            args.budget,
            "value<=",
            note=note,
            judged=judged,
        ),
        Row(
            "context_budget_growth",
            "×",
            growth(free),
            growth(bounded),
            1.5,
            "value<=",
            note="second half / first half of the run",
            judged=judged,
        ),
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
