"""The evaluator_optimizer pattern with fake chat models: the generator ↔ evaluator loop,
feedback reaching the generator, pass_score, max_iterations, policy limits, malformed
verdicts, prefix/suffix steps and the seed-0.1.0 defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from loopengt.compile import compile_spec
from loopengt.compilers.evaluator_optimizer import VERDICT_SCHEMA
from loopengt.errors import UserInputError
from loopengt.spec import load_spec
from tests.compilers.helpers import RecordingFake, fake, node_order, spec_of, step_echo

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-0.1.0.yaml"

LOOP = """
    name: polish
    goal: Write a haiku about owls.
    pattern: evaluator_optimizer
    agents:
      - {name: poet, instructions: You write haiku.}
      - {name: critic, instructions: You judge haiku.}
    steps:
      - {name: write, agent: poet, description: Write the haiku.}
      - {name: judge, agent: critic, depends_on: [write], description: Judge the haiku.}
    evaluator: {generator: write, evaluator: judge, max_iterations: 5}
    policy: {max_turns: 20}
"""


def verdict(passed: bool, feedback: str, score: float | None = None) -> str:
    value: dict[str, object] = {"pass": passed, "feedback": feedback}
    if score is not None:
        value["score"] = score
    return json.dumps(value)


def test_fail_fail_pass_runs_the_generator_three_times_with_the_feedback() -> None:
    poet = fake("draft 1", "draft 2", "draft 3")
    critic = fake(
        verdict(False, "too long"), verdict(False, "no owl", 0.4), verdict(True, "fine", 0.9)
    )
    graph = compile_spec(spec_of(LOOP), models={"poet": poet, "critic": critic})

    assert node_order(graph, {"input": {}}) == ["write", "judge"] * 3
    poet, critic = (
        fake("draft 1", "draft 2", "draft 3"),
        fake(verdict(False, "too long"), verdict(False, "no owl", 0.4), verdict(True, "fine", 0.9)),
    )
    graph = compile_spec(spec_of(LOOP), models={"poet": poet, "critic": critic})
    state = graph.invoke({"input": {}})

    assert state["status"] == "completed" and state.get("stop_reason") is None
    assert state["outputs"]["write"] == "draft 3"
    assert state["outputs"]["judge"] == {"pass": True, "feedback": "fine", "score": 0.9}
    assert state["verdicts"] == {"judge": state["outputs"]["judge"]}
    assert state["turns"] == 6 and state["visits"] == {"write": 3, "judge": 3}
    prompts = poet.prompts()
    assert "Feedback" not in prompts[0]
    assert prompts[1].endswith("Feedback on your previous attempt: too long")
    assert prompts[2].endswith("Feedback on your previous attempt: no owl")
    assert prompts[0].startswith("Goal: Write a haiku about owls.\n\nYour task (write)")


def test_the_evaluator_sees_the_goal_and_the_latest_candidate_and_the_schema() -> None:
    poet = fake("draft 1", "draft 2")
    critic = fake(verdict(False, "again"), verdict(True, "ok"))
    graph = compile_spec(spec_of(LOOP), models={"poet": poet, "critic": critic})
    graph.invoke({"input": {}})

    first, second = (call[1].content for call in critic.received)
    assert str(first).startswith("Goal: Write a haiku about owls.\n\nYour task (judge): Judge")
    assert "Candidate (output of step 'write'):\ndraft 1" in str(first)
    assert "Candidate (output of step 'write'):\ndraft 2" in str(second)
    assert critic.received[0][0].content == "You judge haiku."
    instruction = str(critic.received[0][-1].content)  # structured_call's schema request
    assert json.dumps(VERDICT_SCHEMA) in instruction
    assert VERDICT_SCHEMA["properties"]["feedback"]["maxLength"] == 1000


def test_max_iterations_stops_and_keeps_the_last_output() -> None:
    spec = spec_of(LOOP.replace("max_iterations: 5", "max_iterations: 2"))
    poet = fake("draft 1", "draft 2", "draft 3")
    critic = fake(verdict(False, "weak"), verdict(False, "still weak"), verdict(True, "x"))
    graph = compile_spec(spec, models={"poet": poet, "critic": critic})

    state = graph.invoke({"input": {}})

    assert state["status"] == "stopped"
    assert state["stop_reason"] == (
        "max_iterations: the output of step 'write' did not pass 'judge' in 2 iteration(s); "
        "last feedback: still weak"
    )
    assert state["outputs"]["write"] == "draft 2"
    assert state["verdicts"]["judge"]["pass"] is False
    assert poet.calls == 2 and critic.calls == 2


def test_pass_score_passes_a_high_score_without_pass() -> None:
    spec = spec_of(LOOP.replace("max_iterations: 5", "max_iterations: 5, pass_score: 0.8"))
    poet = fake("draft 1", "draft 2")
    critic = fake(verdict(False, "meh", 0.5), verdict(False, "good enough", 0.85))
    graph = compile_spec(spec, models={"poet": poet, "critic": critic})

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert poet.calls == 2 and state["outputs"]["write"] == "draft 2"


def test_malformed_verdict_is_repaired() -> None:
    poet = fake("draft 1")
    critic = fake("I think it is good!", verdict(True, "good"))
    graph = compile_spec(spec_of(LOOP), models={"poet": poet, "critic": critic})

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["verdicts"]["judge"] == {"pass": True, "feedback": "good"}
    assert critic.calls == 2 and "That reply was invalid" in critic.prompts()[1]
    assert state["turns"] == 2


def test_verdict_that_never_parses_fails_the_run_cleanly() -> None:
    poet = fake("draft 1")
    critic = fake('{"pass": "yes"}', "nope", '{"feedback": "' + "x" * 1200 + '", "pass": true}')
    graph = compile_spec(spec_of(LOOP), models={"poet": poet, "critic": critic})

    state = graph.invoke({"input": {}})

    assert state["status"] == "failed"
    assert state["stop_reason"].startswith("error: step 'judge': no valid structured output")
    assert "xxxx" in state["stop_reason"]  # the raw text is kept
    assert state["outputs"] == {"write": "draft 1"}
    assert "judge" not in state.get("verdicts", {})
    assert poet.calls == 1


def test_policy_max_turns_also_ends_the_loop() -> None:
    spec = spec_of(LOOP.replace("max_turns: 20", "max_turns: 3"))
    poet = fake("d1", "d2", "d3")
    critic = fake(verdict(False, "no"), verdict(False, "no"))
    graph = compile_spec(spec, models={"poet": poet, "critic": critic})

    state = graph.invoke({"input": {}})

    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 3 turns"
    assert state["outputs"]["write"] == "d2" and state["turns"] == 3


def test_feedback_placeholder_in_the_generator_prompt_is_not_repeated() -> None:
    spec = spec_of(
        LOOP.replace(
            "description: Write the haiku.}",
            'prompt: "Write a haiku. Critique so far: [{{feedback}}]"}',
        )
    )
    poet = fake("d1", "d2")
    critic = fake(verdict(False, "rhyme less"), verdict(True, "ok"))
    compile_spec(spec, models={"poet": poet, "critic": critic}).invoke({"input": {}})

    assert poet.prompts() == [
        "Write a haiku. Critique so far: []",
        "Write a haiku. Critique so far: [rhyme less]",
    ]


def test_prefix_runs_once_and_suffix_runs_after_the_pass() -> None:
    spec = spec_of("""
        name: staged
        goal: G.
        pattern: evaluator_optimizer
        agents: [{name: w}]
        steps:
          - {name: plan}
          - {name: write, depends_on: [plan]}
          - {name: review, depends_on: [write, plan]}
          - {name: publish, depends_on: [review]}
          - {name: announce, depends_on: [publish, plan]}
        evaluator: {generator: write, evaluator: review}
        policy: {max_turns: 10}
    """)
    replies = ["the plan", "w1", verdict(False, "more"), "w2", verdict(True, "ok"), "pub", "news"]
    model = fake(*replies)
    graph = compile_spec(spec, models=model)

    assert node_order(graph, {"input": {}}) == [
        "plan",
        "write",
        "review",
        "write",
        "review",
        "publish",
        "announce",
    ]
    state = compile_spec(spec, models=fake(*replies)).invoke({"input": {}})
    assert state["outputs"]["publish"] == "pub" and state["outputs"]["announce"] == "news"
    assert state["status"] == "completed"
    assert state["visits"]["plan"] == 1


def test_body_steps_between_generator_and_evaluator_rerun_each_iteration() -> None:
    spec = load_spec(SEED).model_copy(update={"pattern": "evaluator_optimizer"})
    # seed defaults: evaluator = last step (edit), generator = its first dependency
    # (research); draft lies between them, so it is part of the loop body
    edits = iter([verdict(False, "cite sources"), verdict(True, "good")])
    echo = step_echo().respond
    assert echo is not None

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        if "Your task (edit)" in str(messages[1].content):
            return AIMessage(content=next(edits))
        return echo(messages)

    model = RecordingFake(respond=respond)

    state = compile_spec(spec, models=model).invoke({"input": {"topic": "owls"}})

    assert state["status"] == "completed"
    assert state["visits"] == {"research": 2, "draft": 2, "edit": 2}
    research_prompts = [p for p in model.prompts() if "Your task (research)" in p]
    assert research_prompts[1].endswith("Feedback on your previous attempt: cite sources")


def test_seed_spec_default_max_iterations_is_half_the_turn_limit() -> None:
    spec = load_spec(SEED).model_copy(update={"pattern": "evaluator_optimizer"})
    policy = spec.policy.model_copy(update={"max_turns": 5})  # 5 // 2 = 2 iterations
    two_steps = [spec.steps[0], spec.steps[2].model_copy(update={"dependencies": []})]
    spec = spec.model_copy(update={"policy": policy, "steps": two_steps})
    researcher = fake("notes 1", "notes 2", "notes 3")
    editor = fake(verdict(False, "a"), verdict(False, "b"), verdict(False, "c"))
    graph = compile_spec(
        spec, models={"researcher": researcher, "editor": editor, "writer": fake()}
    )

    assert node_order(graph, {"input": {}}) == ["research", "edit", "research", "edit"]
    researcher = fake("notes 1", "notes 2", "notes 3")
    editor = fake(verdict(False, "a"), verdict(False, "b"), verdict(False, "c"))
    state = compile_spec(
        spec, models={"researcher": researcher, "editor": editor, "writer": fake()}
    ).invoke({"input": {}})
    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("max_iterations:")
    assert state["outputs"]["research"] == "notes 2"


def test_a_generator_that_depends_on_the_evaluator_is_rejected() -> None:
    # by validation, with its position, before anything is compiled
    swapped = LOOP.replace(
        "generator: write, evaluator: judge", "generator: judge, evaluator: write"
    )
    with pytest.raises(UserInputError, match=r"test.yaml:\d+:\d+: .*must run before"):
        spec_of(swapped)
