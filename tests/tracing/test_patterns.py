"""The recorder across patterns: parallel branches calling back from several threads, and
supervisor_worker, whose nodes are agents."""

from __future__ import annotations

import json
from pathlib import Path

from loopengt.compile import compile_spec
from tests.compilers.helpers import fake, spec_of, step_echo
from tests.compilers.test_parallel_fan_out import BRANCHES
from tests.tracing.runner import kinds, lines_of, record


def test_parallel_branches_record_from_several_threads(tmp_path: Path) -> None:
    spec = spec_of(BRANCHES)
    record(compile_spec(spec, models=step_echo(sleep=0.2)), spec, tmp_path)

    raw = (tmp_path / "run-1.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in raw]  # every line whole: no interleaved writes
    starts = {e["step_id"]: e["step"] for e in kinds(events, "step_start")}
    assert sorted(starts.values()) == ["a", "b", "c", "merge"]
    calls = kinds(events, "model_call")
    # each call is attributed to the branch that made it, though they ran at once
    assert sorted((starts[c["step_id"]], c["response"]) for c in calls) == [
        ("a", "a-done"),
        ("b", "b-done"),
        ("c", "c-done"),
        ("merge", "merge-done"),
    ]
    branch_starts = [e for e in kinds(events, "step_start") if e["step"] != "merge"]
    first_end = next(e for e in kinds(events, "step_end"))
    assert all(s["ts"] < first_end["ts"] for s in branch_starts)  # they overlapped


def test_each_step_names_its_agent_from_the_node_metadata(tmp_path: Path) -> None:
    spec = spec_of("""
        name: chain
        goal: Test.
        agents: [{name: writer}, {name: editor}]
        steps:
          - {name: a, agent: writer}
          - {name: b, agent: editor, depends_on: [a]}
          - {name: c, agent: writer, depends_on: [b]}
    """)
    record(compile_spec(spec, models=fake("1", "2", "3")), spec, tmp_path)
    events = lines_of(tmp_path)
    starts = [(e["step"], e["agent"]) for e in kinds(events, "step_start")]
    assert starts == [("a", "writer"), ("b", "editor"), ("c", "writer")]
    assert {e["agent"] for e in kinds(events, "model_call")} == {"writer", "editor"}


TEAM = """
    name: team
    goal: Write a short note about otters.
    pattern: supervisor_worker
    agents:
      - {name: boss, description: Leads the team.}
      - {name: researcher, description: Finds facts.}
      - {name: writer, description: Writes clear prose.}
    steps:
      - {name: notes, agent: researcher, description: Collect facts.}
    supervisor: {agent: boss, max_turns: 6}
    policy: {max_turns: 20}
"""


def test_supervisor_nodes_are_steps_run_by_their_agents(tmp_path: Path) -> None:
    def route(worker: str) -> str:
        return json.dumps(
            {"next": worker, "task": f"go {worker}"} if worker != "FINISH" else {"next": worker}
        )

    models = {
        "boss": fake(route("researcher"), route("writer"), route("FINISH")),
        "researcher": fake("Otters hold hands."),
        "writer": fake("A note about otters."),
    }
    spec = spec_of(TEAM)
    _, state = record(compile_spec(spec, models=models), spec, tmp_path)

    assert state["status"] == "completed"
    events = lines_of(tmp_path)
    starts = kinds(events, "step_start")
    assert [(s["step"], s.get("agent")) for s in starts] == [
        ("boss", "boss"),
        ("researcher", "researcher"),
        ("boss", "boss"),
        ("writer", "writer"),
        ("boss", "boss"),
    ]
    calls = kinds(events, "model_call")
    assert [(c["step"], c["response"][:9]) for c in calls] == [
        ("boss", '{"next": '),
        ("researcher", "Otters ho"),
        ("boss", '{"next": '),
        ("writer", "A note ab"),
        ("boss", '{"next": '),
    ]
    by_id = {s["step_id"]: s["step"] for s in starts}
    assert all(by_id[c["step_id"]] == c["step"] for c in calls)
