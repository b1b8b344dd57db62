"""How often a model's decisions in the shipped examples are right: verdicts and routing.

    uv run python benchmarks/decisions.py [--model local] [--only critic,checker,...] [--json]

Speed is the other scripts' concern; this one measures what a loop decides. It runs the real
example specs from `examples/` through ``compile_spec``, with the agent under test on
``--model`` (default: the embedded model) and, where a probe needs a known candidate, the
author replaced by a ``TestModel`` that answers that candidate:

- ``critic``: review-loop's critic judges 4 haiku and 4 non-haiku (prose, one word repeated,
  another subject, one line). Right: a haiku passes, the others fail.
- ``checker``: custom-draft-check's checker judges 2 release notes that mention every change
  and 2 that do not. Right: the complete ones pass.
- ``gate``: an ``llm_judge`` gate judges 2 informative sentences and 2 repeated slogans.
  Right: the sentences pass.
- ``supervisor``: supervisor-team on 3 questions. Right: the run completes after the writer
  has written (the answer is the writer's, not the researcher's notes).
- ``handoff``: support-handoff on 3 billing and 3 technical requests. Right: the first
  handoff goes to the right desk.

The baseline is a coin toss (50% right for a verdict, a uniform pick for a route): a model
whose decisions are no better than that is exercising the loop's plumbing, not judging.
There are no targets; the figures go in the issue notes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopengt.compile import compile_spec
from loopengt.providers.registry import resolve_model
from loopengt.providers.testing import TestModel
from loopengt.spec import load_spec_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

HAIKU = [
    "Cold autumn rain falls\nOn the empty wooden bench\nLeaves drift in puddles",
    "Grey clouds gather low\nAutumn rain taps the window\nThe old cat sleeps on",
    "Rain on red maples\nThe autumn wind hums softly\nPuddles hold the sky",
    "Autumn rain at dusk\nA lantern glows by the gate\nWet stones shine like moons",
]
NOT_HAIKU = [
    "Autumn rain autumn rain autumn rain autumn rain autumn rain autumn rain",
    "Stocks closed higher today as investors cheered strong earnings from tech companies.",
    "Snow on the mountain\nWinter wind across the peaks\nSkiers race downhill",
    "Rain.",
]
CHANGES = "faster start-up; a dark mode; the login crash is fixed"
COMPLETE_NOTES = [
    "This release starts up faster and adds a dark mode. It also fixes the crash at login.",
    "Dark mode is here, start-up is quicker, and logging in no longer crashes the app.",
]
INCOMPLETE_NOTES = [
    "This release adds a dark mode.",
    "We have redesigned our website and updated the pricing page.",
]
GATE_SPEC = """
name: gate-probe
goal: One informative sentence about tide pools.
agents: [{name: writer}, {name: judge}]
steps:
  - name: write
    agent: writer
    gate:
      kind: llm_judge
      judge: judge
      criteria: An informative sentence about tide pools, not a slogan repeated.
      on_fail: stop
      max_attempts: 1
"""
SENTENCES = [
    "Tide pools are rocky hollows on the shore that keep seawater, and with it anemones, "
    "crabs and snails, when the tide goes out.",
    "Animals in tide pools must survive heat, waves and changing salt levels twice a day.",
]
SLOGANS = [
    "Tide pools rock! Tide pools rock! Tide pools rock! Tide pools rock!",
    "Best pools ever. Best pools ever. Best pools ever.",
]
QUESTIONS = [
    "Why do cats purr?",
    "How do vaccines train the immune system?",
    "What causes the seasons on Earth?",
]
REQUESTS = {
    "billing": [
        "I was charged twice for my order last week.",
        "Please refund my last invoice.",
        "Why is my monthly bill higher than usual?",
    ],
    "tech": [
        "The app crashes every time I log in.",
        "I get error 500 when I upload a file.",
        "The page will not load on my phone.",
    ],
}


def example(name: str, **replace: str) -> Any:
    text = (EXAMPLES / f"{name}.yaml").read_text()  # --examples: variants to compare
    for old, new in replace.items():
        assert text.count(old) == 1, f"{name}: {old!r} is not in the example"
        text = text.replace(old, new)
    return load_spec_text(text, filename=f"{name}.yaml")


def verdict_probe(
    spec: Any, author: str, judge: str, step: str, inputs: dict[str, str], model: Any
) -> Callable[[str], dict[str, Any]]:
    """One verdict of ``judge`` on a candidate that ``author`` always answers."""

    def run(candidate: str) -> dict[str, Any]:
        models = {author: TestModel(text=candidate), judge: model}
        state = compile_spec(spec, models=models).invoke({"input": inputs})
        return dict(state["verdicts"][step])

    return run


def critic(model: Any) -> list[dict[str, Any]]:
    spec = example("review-loop", **{"max_iterations: 3": "max_iterations: 1"})
    judge = verdict_probe(spec, "poet", "critic", "review", {"subject": "autumn rain"}, model)
    cases = [(c, True) for c in HAIKU] + [(c, False) for c in NOT_HAIKU]
    return [score(judge(text), text, expected) for text, expected in cases]


def checker(model: Any) -> list[dict[str, Any]]:
    # one round: the probe wants the checker's first verdict on this note
    spec = example("custom-draft-check", **{"value: 3": "value: 1"})
    judge = verdict_probe(spec, "writer", "checker", "check", {"changes": CHANGES}, model)
    cases = [(c, True) for c in COMPLETE_NOTES] + [(c, False) for c in INCOMPLETE_NOTES]
    return [score(judge(text), text, expected) for text, expected in cases]


def score(verdict: dict[str, Any], candidate: str, expected: bool) -> dict[str, Any]:
    feedback = str(verdict.get("feedback") or "")
    return {
        "case": candidate.split("\n")[0][:40],
        "right": verdict.get("pass") is expected,
        "said": verdict.get("pass"),
        "feedback": feedback[:120],
    }


def gate(model: Any) -> list[dict[str, Any]]:
    spec = load_spec_text(GATE_SPEC, filename="gate-probe.yaml")
    rows = []
    for text, expected in [(c, True) for c in SENTENCES] + [(c, False) for c in SLOGANS]:
        models = {"writer": TestModel(text=text), "judge": model}
        [record] = compile_spec(spec, models=models).invoke({"input": {}})["gates"]
        rows.append(score({"pass": record["passed"], "feedback": record["reason"]}, text, expected))
    return rows


def supervisor(model: Any) -> list[dict[str, Any]]:
    spec = example("supervisor-team")
    rows = []
    for question in QUESTIONS:
        state = compile_spec(spec, models=model).invoke({"input": {"question": question}})
        visits = state.get("visits") or {}
        wrote = "write" in (state.get("outputs") or {})
        rows.append(
            {
                "case": question,
                "right": state["status"] == "completed" and wrote,
                "said": f"{state['status']}, visits {dict(visits)}",
                "feedback": str(state.get("stop_reason") or "")[:120],
            }
        )
    return rows


def handoff(model: Any) -> list[dict[str, Any]]:
    spec = example("support-handoff")
    rows = []
    for desk, requests in REQUESTS.items():
        for request in requests:
            state = compile_spec(spec, models=model).invoke({"input": {"request": request}})
            route = list(state.get("visits") or {})  # agents, in the order they first acted
            hops = [agent for agent in route if agent != "triage"]
            rows.append(
                {
                    "case": request,
                    "right": bool(hops) and hops[0] == desk,
                    "said": f"{state['status']}, route {route}",
                    "feedback": str(state.get("stop_reason") or "")[:120],
                }
            )
    return rows


PROBES = {
    "critic": critic,
    "checker": checker,
    "gate": gate,
    "supervisor": supervisor,
    "handoff": handoff,
}


def main() -> None:
    global EXAMPLES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="local")
    parser.add_argument("--only", default=",".join(PROBES))
    parser.add_argument("--json", action="store_true", help="only the summary, as JSON")
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="where the specs are")
    args = parser.parse_args()
    EXAMPLES = args.examples
    model = resolve_model(args.model)
    summary = []
    for name in args.only.split(","):
        started = time.perf_counter()
        rows = PROBES[name](model)
        right = sum(row["right"] for row in rows)
        seconds = time.perf_counter() - started
        summary.append({"probe": name, "right": right, "cases": len(rows), "seconds": seconds})
        if not args.json:
            print(f"\n{name}: {right}/{len(rows)} right in {seconds:.1f} s")
            for row in rows:
                mark = "ok " if row["right"] else "BAD"
                print(f"  {mark} {row['case']!r}: {row['said']}  {row['feedback']!r}")
    json.dump(summary, sys.stdout, indent=None if args.json else 1)
    print()


if __name__ == "__main__":
    main()
