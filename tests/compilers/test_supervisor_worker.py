"""supervisor_worker with fake chat models: routing order, outputs, FINISH, limits, repair of
malformed routing replies, a seed-0.1.0 spec, gated workers and the mermaid drawing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from loopengt.compile import compile_spec
from tests.compilers.helpers import RecordingFake, fake, spec_of
from tests.compilers.helpers import run_streamed as run

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-0.1.0.yaml"

TEAM = """
    name: team
    goal: Write a short note about otters.
    pattern: supervisor_worker
    agents:
      - name: boss
        description: Leads the team.
      - name: researcher
        description: Finds facts.
        capabilities: [search, summarise]
      - name: writer
        description: Writes clear prose.
    steps:
      - name: notes
        agent: researcher
        description: Collect facts.
        prompt: "Research this: {{task}}"
    supervisor:
      agent: boss
      max_turns: 6
    policy:
      max_turns: 20
"""


def route(next_worker: str, task: str | None = None) -> str:
    return json.dumps({"next": next_worker, **({"task": task} if task else {})})


def team(boss: RecordingFake, spec: str = TEAM, **workers: RecordingFake) -> Any:
    models = {"boss": boss, "researcher": fake("unused"), "writer": fake("unused"), **workers}
    return compile_spec(spec_of(spec), models=models)


def test_routes_one_worker_at_a_time_until_finish() -> None:
    boss = fake(
        route("researcher", "find otter facts"), route("writer", "write it"), route("FINISH")
    )
    researcher = fake("Otters hold hands while sleeping.")
    writer = fake("A note: otters hold hands.")
    graph = team(boss, researcher=researcher, writer=writer)

    order, state = run(graph, {"input": {"audience": "kids"}})

    assert order == ["boss", "researcher", "boss", "writer", "boss"]
    # outputs are keyed by step: the researcher's spec step, the writer's synthesized one
    assert state["outputs"] == {
        "notes": "Otters hold hands while sleeping.",
        "writer": "A note: otters hold hands.",
    }
    assert state["status"] == "completed"
    assert state.get("stop_reason") is None
    assert state["turns"] == 5
    assert state["next_worker"] == "writer"
    assert state["task"] == "write it"


def test_prompts_carry_task_workers_and_results() -> None:
    boss = fake(
        route("researcher", "find otter facts"), route("writer", "write it"), route("FINISH")
    )
    researcher = fake("Otters hold hands while sleeping.")
    writer = fake("A note.")
    run(team(boss, researcher=researcher, writer=writer), {"input": {"audience": "kids"}})

    # the researcher's step prompt renders {{task}}
    assert researcher.prompts() == ["Research this: find otter facts"]
    # the writer has no step: its default prompt has its task and the other worker's result
    writer_prompt = writer.prompts()[0]
    assert "Your task: write it" in writer_prompt
    assert "Otters hold hands while sleeping." in writer_prompt
    first = str(boss.received[0][1].content)
    assert "Goal: Write a short note about otters." in first
    assert '"audience": "kids"' in first
    assert "- researcher: Finds facts. (capabilities: search, summarise)" in first
    assert "- writer: Writes clear prose." in first
    assert "(none yet)" in first
    last = str(boss.received[2][1].content)
    assert "Otters hold hands while sleeping." in last and "A note." in last
    assert last.index("Otters hold hands") < last.index("A note.")  # results in order
    # the routing schema is in the instruction, with the allowed names and a bounded task
    instruction = str(boss.received[0][-1].content)
    assert '"enum": ["researcher", "writer"]' in instruction  # no FINISH before any work
    later = str(boss.received[1][-1].content)
    assert '"enum": ["writer", "FINISH", "researcher"]' in later
    assert '"maxLength": 500' in instruction


def test_supervisor_max_turns_stops_cleanly_and_keeps_outputs() -> None:
    spec = TEAM.replace("max_turns: 6", "max_turns: 2")
    boss = fake(route("researcher", "more"))  # never finishes (the fake repeats its reply)
    researcher = fake("fact one", "fact two", "fact three")
    order, state = run(team(boss, spec, researcher=researcher), {"input": {}})

    assert order == ["boss", "researcher", "boss", "researcher", "boss"]
    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("max_turns:")
    assert "2 decisions" in state["stop_reason"]
    assert state["outputs"] == {"notes": "fact two"}
    assert boss.calls == 2  # the stopping decision made no model call


def test_when_both_limits_are_reached_the_supervisors_is_named() -> None:
    # supervisor.max_turns 2 and policy.max_turns 4 run out together, before decision 3
    spec = TEAM.replace("max_turns: 6", "max_turns: 2").replace("max_turns: 20", "max_turns: 4")
    boss = fake(route("researcher", "more"))
    researcher = fake("fact one", "fact two")
    _, state = run(team(boss, spec, researcher=researcher), {"input": {}})

    assert state["turns"] == 4
    assert state["stop_reason"] == "max_turns: the supervisor reached its limit of 2 decisions"


def test_policy_max_turns_counts_every_agent_turn() -> None:
    spec = TEAM.replace("max_turns: 6", "max_turns: 50").replace("max_turns: 20", "max_turns: 3")
    boss = fake(route("researcher", "more"))
    researcher = fake("fact one", "fact two")
    order, state = run(team(boss, spec, researcher=researcher), {"input": {}})

    # boss, researcher, boss use the 3 turns; the next worker halts, the supervisor ends
    assert order == ["boss", "researcher", "boss", "researcher", "boss"]
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 3 turns"
    assert state["turns"] == 3
    assert state["outputs"] == {"notes": "fact one"}


def test_long_loop_ends_on_the_limit_not_graph_recursion() -> None:
    spec = TEAM.replace("max_turns: 6", "max_turns: 40").replace("max_turns: 20", "max_turns: 200")
    boss = fake(route("writer", "again"))
    order, state = run(team(boss, spec, writer=fake("draft")), {"input": {}})

    assert len(order) == 81 and order[-1] == "boss"
    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("max_turns: the supervisor")


def test_malformed_routing_is_repaired_then_accepted() -> None:
    boss = fake("I think the researcher should go.", route("researcher", "go"), route("FINISH"))
    researcher = fake("facts")
    order, state = run(team(boss, researcher=researcher), {"input": {}})

    assert order == ["boss", "researcher", "boss"]
    assert state["status"] == "completed"
    assert boss.calls == 3
    repair = boss.received[1]
    assert repair[-2].content == "I think the researcher should go."  # its own bad reply
    assert isinstance(repair[-1], HumanMessage)
    assert "That reply was invalid" in str(repair[-1].content)
    assert state["usage"]["model_calls"] == 4  # the repair call counts too
    assert state["turns"] == 3  # but it is one supervisor turn


def test_unknown_worker_name_is_repaired() -> None:
    boss = fake(route("painter"), route("writer", "write"), route("FINISH"))
    order, state = run(team(boss, writer=fake("text")), {"input": {}})

    assert order == ["boss", "writer", "boss"]
    assert "is not one of" in str(boss.received[1][-1].content)
    assert state["outputs"] == {"writer": "text"}


def test_routing_that_stays_malformed_fails_with_the_raw_text() -> None:
    boss = fake("send it to the writer please")  # repeated on every attempt
    order, state = run(team(boss), {"input": {}})

    assert order == ["boss"]
    assert state["status"] == "failed"
    assert state["stop_reason"].startswith("error: supervisor routing")
    assert "send it to the writer please" in state["stop_reason"]
    assert boss.calls == 3  # the first attempt and two repairs
    assert state["errors"][0]["step"] == "boss"


def test_worker_error_ends_the_run_through_the_supervisor() -> None:
    boss = fake(route("writer", "write"))
    writer = RecordingFake(raises=[ValueError("bad request")])
    order, state = run(team(boss, writer=writer), {"input": {}})

    assert order == ["boss", "writer", "boss"]
    assert state["status"] == "failed"
    assert "bad request" in state["stop_reason"]
    assert boss.calls == 1  # a stopped run makes no more routing decisions


def test_gated_worker_retries_before_reporting_back() -> None:
    gate = "      gates:\n        - {step: notes, kind: regex, pattern: FACT}\n"
    spec = TEAM.replace("      max_turns: 20\n", "      max_turns: 20\n" + gate)
    boss = fake(route("researcher", "go"), route("FINISH"))
    researcher = fake("nothing useful", "FACT: otters hold hands")
    order, state = run(team(boss, spec, researcher=researcher), {"input": {}})

    assert order == ["boss", "researcher", "researcher", "boss"]
    assert "does not match" in researcher.prompts()[1]  # the gate's feedback
    assert state["outputs"] == {"notes": "FACT: otters hold hands"}
    assert state["status"] == "completed"


def test_seed_spec_runs_with_default_roles() -> None:
    # seed-0.1.0: no pattern blocks; the first agent supervises, the others are workers
    text = SEED.read_text() + "pattern: supervisor_worker\n"
    boss = fake(route("writer", "draft the post"), route("editor", "edit it"), route("FINISH"))
    writer = fake("Draft about bees.")
    editor = fake("Edited post about bees.")
    models = {"researcher": boss, "writer": writer, "editor": editor}
    graph = compile_spec(spec_of(text), models=models)

    order, state = run(graph, {"input": {"topic": "bees"}})

    assert order == ["researcher", "writer", "researcher", "editor", "researcher"]
    assert state["outputs"] == {"draft": "Draft about bees.", "edit": "Edited post about bees."}
    assert state["status"] == "completed"
    assert "Write a 500-word draft" in writer.prompts()[0]
    # the editor's step depends on the draft, so its prompt carries it
    assert "Draft about bees." in editor.prompts()[0]
    assert "capabilities: writing" in str(boss.received[0][1].content)


def test_seed_spec_stops_on_policy_max_turns() -> None:
    text = SEED.read_text() + "pattern: supervisor_worker\n"
    boss = fake(route("writer", "again"))
    models = {"researcher": boss, "writer": fake("d"), "editor": fake("e")}
    graph = compile_spec(spec_of(text), models=models)

    order, state = run(graph, {"input": {}})

    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 12 turns"
    assert state["turns"] == 12
    assert order[-1] == "researcher"


def test_mermaid_shows_routing_edges() -> None:
    mermaid = team(fake(route("FINISH"))).get_graph().draw_mermaid()

    assert "__start__ --> boss;" in mermaid
    assert "boss -.-> researcher;" in mermaid
    assert "boss -.-> writer;" in mermaid
    assert "boss -.-> __end__;" in mermaid
    assert "researcher --> boss;" in mermaid
    assert "writer --> boss;" in mermaid


def test_transient_supervisor_error_is_retried_by_the_retry_policy() -> None:
    retry = "      retry: {attempts: 2, backoff_seconds: 0}\n"
    spec = TEAM.replace("      max_turns: 20\n", "      max_turns: 20\n" + retry)
    boss = fake(route("researcher"), route("FINISH"), raises=[ConnectionError("reset by peer")])
    order, state = run(team(boss, spec), {"input": {}})

    assert order == ["boss", "researcher", "boss"]
    assert boss.calls == 3
    assert state["status"] == "completed"
    assert state["turns"] == 3  # the failed attempt's update was discarded


def test_supervisor_timeout_stops_the_run_as_a_step_timeout_does() -> None:
    limits = "      step_timeout_seconds: 0.05\n      retry: {attempts: 2, backoff_seconds: 0}\n"
    spec = TEAM.replace("      max_turns: 20\n", "      max_turns: 20\n" + limits)
    boss = fake(route("FINISH"), sleep=0.3)
    _, state = run(team(boss, spec), {"input": {}})

    assert boss.calls == 2
    assert state["status"] == "stopped"
    assert state["stop_reason"].startswith("error: supervisor 'boss' failed after 2 attempt(s)")
    assert state["stop_reason"].endswith("no answer within the step timeout of 0.05s")


def test_finish_is_not_offered_before_any_worker_has_reported() -> None:
    # the supervisor does no work itself: a FINISH first would complete a run with nothing
    boss = fake(route("FINISH"), route("writer", "write"), route("FINISH"))
    order, state = run(team(boss, writer=fake("A note.")), {"input": {}})

    assert order == ["boss", "writer", "boss"]
    assert state["status"] == "completed"
    assert state["outputs"] == {"writer": "A note."}
    repair = str(boss.received[1][-1].content)
    assert "That reply was invalid" in repair and "'FINISH' is not one of" in repair
