"""Every policy StepNode enforces, through the sequential pattern with fake chat models:
turn/time limits, step timeouts and retries, gates, budgets, stop conditions, approvals."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from loopengt.compile import compile_spec
from tests.compilers.helpers import fake, node_order, spec_of, with_usage


def chain(policy: str, *, step_a: str = "description: first") -> str:
    """A three-step chain a -> b -> c run by agent w; ``policy`` is a YAML flow mapping and
    ``step_a`` one more YAML line for step a."""
    return f"""
        name: chain
        goal: Test.
        agents: [{{name: w}}, {{name: judge}}]
        steps:
          - name: a
            agent: w
            {step_a}
          - {{name: b, agent: w, depends_on: [a]}}
          - {{name: c, agent: w, depends_on: [b]}}
        policy: {policy}
    """


class ServerError(Exception):
    """Looks like an HTTP 500 from a provider client: worth retrying."""

    status_code = 500


class BadRequest(Exception):
    status_code = 400


# -- limits ------------------------------------------------------------------------------------


def test_turn_limit_stops_cleanly_and_keeps_outputs() -> None:
    spec = spec_of(chain("{max_turns: 2}"))
    assert node_order(compile_spec(spec, models=fake("x")), {"input": {}}) == ["a", "b", "c"]

    graph = compile_spec(spec, models=fake("one", "two", "three"))
    state = graph.invoke({"input": {}})  # no GraphRecursionError, no exception at all

    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("max_turns")
    assert state["outputs"] == {"a": "one", "b": "two"}
    assert state["turns"] == 2


def test_turn_limit_ends_a_gate_loop_before_the_recursion_limit() -> None:
    gate = "{kind: regex, pattern: '^DONE', max_attempts: 1000}"
    spec = spec_of(chain("{max_turns: 4}", step_a=f"gate: {gate}"))
    model = fake("not yet")

    assert node_order(compile_spec(spec, models=model), {"input": {}}) == ["a"] * 5
    state = compile_spec(spec, models=fake("not yet")).invoke({"input": {}})

    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 4 turns"
    assert state["turns"] == 4
    assert len(state["gates"]) == 4


def test_step_timeout_is_retried_then_stops_the_run() -> None:
    policy = "{max_turns: 5, step_timeout_seconds: 0.05, retry: {attempts: 2, backoff_seconds: 0}}"
    model = fake("too late", sleep=0.3)
    graph = compile_spec(spec_of(chain(policy)), models=model)

    state = graph.invoke({"input": {}})

    assert model.calls == 2
    assert state["status"] == "stopped"
    assert "step 'a'" in state["stop_reason"]
    assert state["stop_reason"].endswith("no answer within the step timeout of 0.05s")
    assert state.get("outputs", {}) == {}
    assert state["errors"][0]["step"] == "a"


def test_transient_error_is_retried_by_the_retry_policy() -> None:
    model = fake("fine", "ok", "done", raises=[ServerError("boom")])
    graph = compile_spec(
        spec_of(chain("{max_turns: 5, retry: {attempts: 3, backoff_seconds: 0}}")), models=model
    )

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"] == {"a": "fine", "b": "ok", "c": "done"}
    assert model.calls == 4  # a twice (500, then fine), then b and c
    assert state["turns"] == 3  # the failed attempt's update is discarded


def test_non_transient_error_is_not_retried() -> None:
    model = fake("never used", raises=[BadRequest("invalid model name")])
    graph = compile_spec(
        spec_of(chain("{max_turns: 5, retry: {attempts: 3, backoff_seconds: 0}}")), models=model
    )

    state = graph.invoke({"input": {}})

    assert model.calls == 1
    assert state["status"] == "failed"
    assert state["stop_reason"] == ("error: step 'a' failed after 1 attempt(s): invalid model name")


def test_total_time_limit_cuts_the_call_in_flight() -> None:
    # an answer of this fake takes about 0.4 s (measured: sleep=0.2 doubles): a ends at about
    # 0.4 s, b's call would end at about 0.8 s, past the 0.6 s limit
    model = fake("slow answer", sleep=0.2)
    graph = compile_spec(
        spec_of(chain("{max_turns: 5, max_total_time_seconds: 0.6}")), models=model
    )

    began = time.monotonic()
    state = graph.invoke({"input": {}})

    assert time.monotonic() - began < 0.75  # b's call was cut at the limit
    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("max_total_time")
    assert state["outputs"] == {"a": "slow answer"}


def test_token_budget_stops_once_spent() -> None:
    model = fake(with_usage("one", 10, 5), with_usage("two", 10, 5), with_usage("three", 1, 1))
    graph = compile_spec(spec_of(chain("{max_turns: 5, budget: {max_tokens: 25}}")), models=model)

    state = graph.invoke({"input": {}})

    assert model.calls == 2
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "budget: used 30 tokens of 25"
    assert state["outputs"] == {"a": "one", "b": "two"}
    assert state["usage"]["total_tokens"] == 30
    assert state["usage"]["input_tokens"] == 20


def test_stop_condition_contains_completes_the_run_early() -> None:
    policy = "{max_turns: 5, stop_conditions: [{step: b, contains: FINAL, reason: b is final}]}"
    graph = compile_spec(spec_of(chain(policy)), models=fake("FINAL a", "FINAL b", "c"))

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["stop_reason"] == "stop_condition: b is final"
    assert state["outputs"] == {"a": "FINAL a", "b": "FINAL b"}  # only b's output counts


def test_stop_condition_matches_a_regex() -> None:
    policy = "{max_turns: 5, stop_conditions: [{matches: '^ANSWER: \\d+$'}]}"
    graph = compile_spec(spec_of(chain(policy)), models=fake("thinking", "ANSWER: 42", "x"))

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["stop_reason"].startswith("stop_condition")
    assert "'b'" in state["stop_reason"]
    assert state["outputs"] == {"a": "thinking", "b": "ANSWER: 42"}


# -- gates -------------------------------------------------------------------------------------


def gated(gate: str, policy: str = "{max_turns: 8}") -> str:
    return chain(policy, step_a=f"gate: {gate}")


def test_regex_gate_retries_with_the_reason_then_passes() -> None:
    spec = spec_of(gated("{kind: regex, pattern: '^DONE'}"))
    replies = ("a draft", "DONE: the answer", "b", "c")
    order = node_order(compile_spec(spec, models=fake(*replies)), {"input": {}})
    assert order == ["a", "a", "a__passed", "b", "c"]

    model = fake(*replies)
    state = compile_spec(spec, models=model).invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"]["a"] == "DONE: the answer"
    retry_prompt = model.prompts()[1]
    assert "Your previous attempt was rejected: output does not match /^DONE/" in retry_prompt
    assert "rejected" not in model.prompts()[2]  # b's prompt carries no stale feedback
    assert [(g["passed"], g["attempt"]) for g in state["gates"]] == [(False, 1), (True, 2)]
    assert state["feedback"]["a"] == ""  # cleared once the gate passed


def test_gate_failing_max_attempts_stops_with_the_reason() -> None:
    model = fake("nope")
    graph = compile_spec(
        spec_of(gated("{kind: regex, pattern: '^DONE', max_attempts: 2}")), models=model
    )

    assert node_order(graph, {"input": {}}) == ["a", "a"]
    state = graph.invoke({"input": {}})

    assert state["status"] == "stopped"
    assert state["stop_reason"] == (
        "gate on step 'a' failed after 2 attempt(s): output does not match /^DONE/"
    )
    assert state["outputs"] == {"a": "nope"}  # kept, even though rejected


def test_json_schema_gate() -> None:
    gate = "{kind: json_schema, schema: {type: object, required: [score]}}"
    model = fake('{"note": "x"}', '{"score": 3}', "b", "c")
    graph = compile_spec(spec_of(gated(gate)), models=model)

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"]["a"] == '{"score": 3}'
    assert "'score' is a required property" in model.prompts()[1]


def test_llm_judge_gate_uses_the_judge_agent() -> None:
    gate = "{kind: llm_judge, criteria: Mentions owls., judge: judge}"
    writer = fake("about cats", "about owls", "b", "c")
    judge = fake(
        '{"reasoning": "no owls mentioned", "score": false}',
        '{"reasoning": "has owls", "score": true}',
    )
    graph = compile_spec(spec_of(gated(gate)), models={"w": writer, "judge": judge})

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"]["a"] == "about owls"
    assert judge.calls == 2
    assert "Criterion: Mentions owls." in str(judge.received[0][1].content)
    assert "about cats" in str(judge.received[0][1].content)
    assert "rejected: no owls mentioned" in writer.prompts()[1]
    assert [g["reason"] for g in state["gates"]] == ["no owls mentioned", "has owls"]
    assert state["usage"]["model_calls"] == 6  # 4 writer calls + 2 judge calls


def test_llm_judge_model_failure_fails_the_run_cleanly() -> None:
    gate = "{kind: llm_judge, criteria: Mentions owls., judge: judge}"
    writer = fake("about owls", "b", "c")
    judge = fake('{"reasoning": "fine", "score": true}')
    judge.raises = [ValueError("judge exploded")]
    graph = compile_spec(spec_of(gated(gate)), models={"w": writer, "judge": judge})

    state = graph.invoke({"input": {}})  # never raises out of invoke

    assert state["status"] == "failed"
    assert state["stop_reason"] == (
        "error: gate on step 'a' failed after 1 attempt(s): judge exploded"
    )
    assert "a" not in state["outputs"]
    assert writer.calls == 1


def has_number(output: Any, *, step: str) -> tuple[bool, str]:
    """A verifier named by import path in the spec below."""
    ok = any(ch.isdigit() for ch in str(output))
    return ok, "" if ok else f"{step} output has no number"


def test_verifier_gate_by_import_path() -> None:
    gate = "{kind: verifier, verifier: 'tests.compilers.test_sequential_policy:has_number'}"
    model = fake("many", "seven (7)", "b", "c")
    graph = compile_spec(spec_of(gated(gate)), models=model)

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"]["a"] == "seven (7)"
    assert "rejected: a output has no number" in model.prompts()[1]


# -- approvals ---------------------------------------------------------------------------------

APPROVAL = chain("{max_turns: 5, approvals: [{step: b, message: 'Publish b?'}]}")


def run_until_approval(graph: Any, thread: str) -> RunnableConfig:
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    paused = graph.invoke({"input": {}}, config)
    assert "__interrupt__" in paused
    [pending] = paused["__interrupt__"]
    assert pending.value == {"type": "approval", "step": "b", "message": "Publish b?"}
    assert paused["outputs"] == {"a": "one"}
    return config


def test_approval_interrupts_then_resumes_to_completion() -> None:
    model = fake("one", "two", "three")
    graph = compile_spec(spec_of(APPROVAL), models=model, checkpointer=InMemorySaver())

    config = run_until_approval(graph, "t1")
    assert model.calls == 1
    state = graph.invoke(Command(resume={"approved": True}), config)

    assert "__interrupt__" not in state
    assert state["status"] == "completed"
    assert state["outputs"] == {"a": "one", "b": "two", "c": "three"}
    assert model.calls == 3  # a is not run again


def test_rejected_approval_ends_the_run_as_rejected() -> None:
    model = fake("one", "two", "three")
    graph = compile_spec(spec_of(APPROVAL), models=model, checkpointer=InMemorySaver())

    config = run_until_approval(graph, "t2")
    state = graph.invoke(Command(resume={"approved": False, "comment": "not yet"}), config)

    assert state["status"] == "rejected"
    assert state["stop_reason"] == "rejected: step 'b' was not approved (not yet)"
    assert state["outputs"] == {"a": "one"}
    assert model.calls == 1


def test_approval_survives_a_new_process_with_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "loop.db"
    first = fake("one")
    with sqlite3.connect(db, check_same_thread=False) as conn:
        graph = compile_spec(spec_of(APPROVAL), models=first, checkpointer=SqliteSaver(conn))
        config = run_until_approval(graph, "durable")
    conn.close()

    # a fresh graph, model and connection: only the database carries the run over
    second = fake("two", "three")
    with sqlite3.connect(db, check_same_thread=False) as conn:
        graph = compile_spec(spec_of(APPROVAL), models=second, checkpointer=SqliteSaver(conn))
        state = graph.invoke(Command(resume={"approved": True}), config)
    conn.close()

    assert state["status"] == "completed"
    assert state["outputs"] == {"a": "one", "b": "two", "c": "three"}
    assert (first.calls, second.calls) == (1, 2)
