"""The parallel_fan_out pattern with fake chat models: static branches in one superstep and a
waiting aggregator, a Send map whose results come back in input order, gates, limits,
max_concurrency, the Mermaid drawing and the seed-0.1.0 defaults."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from loopengt.compile import compile_spec
from loopengt.spec import load_spec
from tests.compilers.helpers import RecordingFake, fake, node_order, spec_of, step_echo, supersteps

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-0.1.0.yaml"

BRANCHES = """
    name: fan
    goal: Compare three sources.
    pattern: parallel_fan_out
    agents: [{name: reader}]
    steps:
      - {name: a, description: Read source A.}
      - {name: b, description: Read source B.}
      - {name: c, description: Read source C.}
      - {name: merge, description: Merge the notes.}
    fan_out: {branches: [c, a, b], aggregator: merge}
    policy: {max_turns: 10}
"""


def test_branches_share_a_superstep_and_the_aggregator_waits_for_all() -> None:
    graph = compile_spec(spec_of(BRANCHES), models=step_echo())

    assert supersteps(graph, {"input": {}}) == [{"a", "b", "c"}, {"merge"}]
    order = node_order(graph, {"input": {}})
    # the branch updates arrive (in any order) before the aggregator's
    assert set(order[:3]) == {"a", "b", "c"} and order[3:] == ["merge"]


def test_branch_outputs_and_the_aggregator_prompt_in_declared_order() -> None:
    model = step_echo()
    graph = compile_spec(spec_of(BRANCHES), models=model)

    state = graph.invoke({"input": {"topic": "owls"}})

    assert state["outputs"] == {"a": "a-done", "b": "b-done", "c": "c-done", "merge": "merge-done"}
    assert state["status"] == "completed" and state.get("stop_reason") is None
    assert state["turns"] == 4
    prompt = model.prompts()[-1]
    assert prompt.startswith("Goal: Compare three sources.\n\nYour task (merge): Merge the notes.")
    positions = [prompt.index(f"Result of step {s!r}:\n{s}-done") for s in ("c", "a", "b")]
    assert positions == sorted(positions)  # fan_out.branches order: c, a, b


def test_without_an_aggregator_every_branch_ends_the_run() -> None:
    spec = spec_of("""
        name: fan
        goal: Two things at once.
        agents: [{name: w}]
        steps: [{name: left}, {name: right}]
        pattern: parallel_fan_out
        policy: {max_turns: 5}
    """)
    graph = compile_spec(spec, models=step_echo())

    assert supersteps(graph, {"input": {}}) == [{"left", "right"}]
    state = graph.invoke({"input": {}})
    assert state["outputs"] == {"left": "left-done", "right": "right-done"}
    assert state["status"] == "completed"


MAP = """
    name: mapper
    goal: Summarise each page.
    pattern: parallel_fan_out
    inputs:
      pages: {description: The pages.}
    agents: [{name: reader}, {name: editor}]
    steps:
      - {name: summarise, agent: reader, prompt: "Summarise {{item}}."}
      - {name: report, agent: editor, description: Join the summaries.}
    fan_out: {map_step: summarise, map_over: input.pages, aggregator: report}
    policy: {max_turns: 20}
"""
ITEM = re.compile(r"Summarise (\w+)\.")


def slow_reader(delays: dict[str, float]) -> RecordingFake:
    """Answers ``sum(<item>)``, sleeping per item so items finish in a chosen order."""

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        found = ITEM.search(str(messages[-1].content))
        item = found.group(1) if found else "?"
        time.sleep(delays.get(item, 0))
        return AIMessage(content=f"sum({item})")

    return RecordingFake(respond=respond)


def test_map_results_come_back_in_input_order_whatever_order_items_finish() -> None:
    reader = slow_reader({"p1": 0.3, "p2": 0.15, "p3": 0.0})
    editor = fake("the report")
    graph = compile_spec(spec_of(MAP), models={"reader": reader, "editor": editor})

    order = node_order(graph, {"input": {"pages": ["p1", "p2", "p3"]}})
    assert order == ["summarise"] * 3 + ["summarise__join", "report"]
    state = graph.invoke({"input": {"pages": ["p1", "p2", "p3"]}})

    assert state["outputs"]["summarise"] == ["sum(p1)", "sum(p2)", "sum(p3)"]
    assert state["mapped"]["summarise"] == {0: "sum(p1)", 1: "sum(p2)", 2: "sum(p3)"}
    assert state["outputs"]["report"] == "the report"
    assert state["status"] == "completed"
    assert state["turns"] == 4
    assert '["sum(p1)", "sum(p2)", "sum(p3)"]' in editor.prompts()[-1]


def test_items_do_finish_out_of_order() -> None:
    reader = slow_reader({"p1": 0.3, "p2": 0.15, "p3": 0.0})
    graph = compile_spec(spec_of(MAP), models={"reader": reader, "editor": fake("r")})
    finished = []
    for chunk in graph.stream({"input": {"pages": ["p1", "p2", "p3"]}}, stream_mode="updates"):
        if "summarise" in chunk:
            finished += list(chunk["summarise"]["mapped"]["summarise"].values())
    assert finished == ["sum(p3)", "sum(p2)", "sum(p1)"]


def test_empty_list_skips_the_map_but_the_aggregator_runs() -> None:
    reader, editor = fake(), fake("nothing to report")
    graph = compile_spec(spec_of(MAP), models={"reader": reader, "editor": editor})

    assert node_order(graph, {"input": {"pages": []}}) == ["summarise__join", "report"]
    state = graph.invoke({"input": {"pages": []}})
    assert state["outputs"] == {"summarise": [], "report": "nothing to report"}
    assert state["status"] == "completed"
    assert reader.calls == 0


def test_map_over_something_that_is_not_a_list_fails_cleanly() -> None:
    reader, editor = fake(), fake()
    graph = compile_spec(spec_of(MAP), models={"reader": reader, "editor": editor})

    state = graph.invoke({"input": {"pages": "p1"}})

    assert state["status"] == "failed"
    assert state["stop_reason"] == (
        "error: step 'summarise' maps over input.pages: not a list (got str)"
    )
    assert reader.calls == editor.calls == 0


def test_map_and_branches_run_side_by_side() -> None:
    spec = spec_of("""
        name: mixed
        goal: Both.
        pattern: parallel_fan_out
        inputs: {xs: {}}
        agents: [{name: w}]
        steps:
          - {name: each, prompt: "Summarise {{item}}."}
          - {name: side, description: A side note.}
          - {name: join, description: Join.}
        fan_out: {branches: [side], map_step: each, map_over: input.xs, aggregator: join}
        policy: {max_turns: 10}
    """)

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        text = str(messages[-1].content)
        found = ITEM.search(text)
        return AIMessage(content=f"sum({found.group(1)})" if found else "note")

    graph = compile_spec(spec, models=RecordingFake(respond=respond))

    assert supersteps(graph, {"input": {"xs": ["x", "y"]}}) == [
        {"each", "side"},
        {"each__join"},
        {"join"},
    ]
    state = graph.invoke({"input": {"xs": ["x", "y"]}})
    assert state["outputs"]["each"] == ["sum(x)", "sum(y)"]
    assert state["outputs"]["side"] == "note"
    assert state["status"] == "completed"


def test_map_step_after_a_dependency_and_after_two_through_a_dispatch_node() -> None:
    one = spec_of("""
        name: planned
        goal: G.
        inputs: {xs: {}}
        agents: [{name: w}]
        steps:
          - {name: plan}
          - name: each
            depends_on: [plan]
            map_over: input.xs
            prompt: "Summarise {{item}} per {{plan}}."
          - {name: done, depends_on: [each]}
        pattern: parallel_fan_out
        policy: {max_turns: 10}
    """)
    graph = compile_spec(one, models=step_echo())
    assert node_order(graph, {"input": {"xs": [1, 2]}}) == [
        "plan",
        "each",
        "each",
        "each__join",
        "done",
    ]
    two = spec_of("""
        name: planned
        goal: G.
        pattern: parallel_fan_out
        inputs: {xs: {}}
        agents: [{name: w}]
        steps:
          - {name: p, description: P.}
          - {name: q, description: Q.}
          - {name: each, depends_on: [p, q], prompt: "Summarise {{item}}."}
        fan_out: {branches: [p, q], map_step: each, map_over: input.xs}
        policy: {max_turns: 10}
    """)
    graph = compile_spec(two, models=step_echo())
    assert supersteps(graph, {"input": {"xs": [1, 2]}}) == [
        {"p", "q"},
        {"each__dispatch"},
        {"each"},
        {"each__join"},
    ]
    state = graph.invoke({"input": {"xs": [1, 2]}})
    assert state["outputs"]["each"] == ["unknown-done", "unknown-done"]
    assert state["status"] == "completed"  # the join ends the run: nothing depends on it


def test_max_turns_cuts_the_map_at_the_limit_and_keeps_what_was_made() -> None:
    spec = spec_of(MAP.replace("max_turns: 20", "max_turns: 2"))
    reader = slow_reader({})
    graph = compile_spec(spec, models={"reader": reader, "editor": fake("never")})

    state = graph.invoke({"input": {"pages": ["p1", "p2", "p3", "p4"]}})

    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 2 turns"
    assert state["outputs"]["summarise"] == ["sum(p1)", "sum(p2)"]
    assert "report" not in state["outputs"]
    assert reader.calls == 2 and state["turns"] == 2


def test_gated_branch_retries_with_feedback_before_the_aggregator() -> None:
    spec = spec_of("""
        name: gated
        goal: G.
        pattern: parallel_fan_out
        agents: [{name: w}]
        steps:
          - {name: a, prompt: "Write A.", gate: {kind: regex, pattern: "^OK"}}
          - {name: b, prompt: "Write B."}
          - {name: merge, prompt: "Merge {{a}} and {{b}}."}
        fan_out: {branches: [a, b], aggregator: merge}
        policy: {max_turns: 10}
    """)
    tries = {"a": 0}

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        text = str(messages[-1].content)
        if text.startswith("Write A."):
            tries["a"] += 1
            return AIMessage(content="bad" if tries["a"] == 1 else "OK a")
        return AIMessage(content="OK b" if text == "Write B." else "merged")

    model = RecordingFake(respond=respond)
    graph = compile_spec(spec, models=model)

    assert node_order(graph, {"input": {}})[-3:] == ["a", "a__passed", "merge"]
    tries["a"] = 0
    state = graph.invoke({"input": {}})
    assert state["outputs"] == {"a": "OK a", "b": "OK b", "merge": "merged"}
    assert state["status"] == "completed"
    assert [g["passed"] for g in state["gates"]] == [False, True]
    assert "Merge OK a and OK b." in model.prompts()


@pytest.mark.parametrize("time_limit", [False, True])
def test_gated_map_step_retries_each_item_inside_its_node(time_limit: bool) -> None:
    """With a total time limit each item's node also writes the run's start time, which
    its gate loop merges through the state's reducers (a StartsAsNone channel)."""
    gated = MAP.replace(
        'prompt: "Summarise {{item}}."}',
        'prompt: "Summarise {{item}}.", gate: {kind: regex, pattern: "good"}}',
    )
    if time_limit:
        gated = gated.replace("max_turns: 20}", "max_turns: 20, max_total_time_seconds: 60}")
        assert "max_total_time_seconds" in gated
    spec = spec_of(gated)
    lock, seen = threading.Lock(), set()

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        item = ITEM.search(str(messages[-1].content))
        assert item is not None
        with lock:  # the first attempt of p2 fails its gate
            first = item.group(1) not in seen
            seen.add(item.group(1))
        bad = first and item.group(1) == "p2"
        return AIMessage(content=f"{'poor' if bad else 'good'} {item.group(1)}")

    reader = RecordingFake(respond=respond)
    graph = compile_spec(spec, models={"reader": reader, "editor": fake("r")})

    state = graph.invoke({"input": {"pages": ["p1", "p2"]}})

    assert state["outputs"]["summarise"] == ["good p1", "good p2"]
    assert state["status"] == "completed"
    assert reader.calls == 3 and state["turns"] == 4
    retried = [p for p in reader.prompts() if "previous attempt was rejected" in p]
    assert len(retried) == 1 and "Summarise p2." in retried[0]
    assert not state.get("feedback", {}).get("summarise")


def concurrency_probe() -> tuple[RecordingFake, dict[str, int]]:
    seen = {"now": 0, "max": 0}
    lock = threading.Lock()

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        with lock:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
        time.sleep(0.05)
        with lock:
            seen["now"] -= 1
        return AIMessage(content="x")

    return RecordingFake(respond=respond), seen


def test_max_concurrency_bounds_the_items_running_at_once() -> None:
    limited = MAP.replace("aggregator: report}", "aggregator: report, max_concurrency: 2}")
    pages = {"input": {"pages": [f"p{i}" for i in range(6)]}}
    model, seen = concurrency_probe()
    state = compile_spec(spec_of(limited), models=model).invoke(pages)
    assert state["status"] == "completed" and len(state["outputs"]["summarise"]) == 6
    assert seen["max"] == 2

    model, seen = concurrency_probe()
    compile_spec(spec_of(MAP), models=model).invoke(pages)
    assert seen["max"] > 2  # without the limit they do overlap


def test_mermaid_drawing_shows_the_fan_out() -> None:
    mermaid = compile_spec(spec_of(MAP), models=fake()).get_graph().draw_mermaid()

    assert "__start__ -.-> summarise;" in mermaid
    assert "__start__ -.-> summarise__join;" in mermaid
    assert "summarise --> summarise__join;" in mermaid
    assert "summarise__join --> report;" in mermaid

    drawn = compile_spec(spec_of(BRANCHES), models=fake()).get_graph().draw_mermaid()
    for branch in ("a", "b", "c"):
        assert f"__start__ --> {branch};" in drawn
        assert f"{branch} --> merge;" in drawn


def test_seed_spec_runs_under_parallel_fan_out_with_the_default_roles() -> None:
    spec = load_spec(SEED).model_copy(update={"pattern": "parallel_fan_out"})
    model = step_echo()
    graph = compile_spec(spec, models=model)

    # branches = steps without dependencies (research); aggregator = the step that depends
    # on every branch (draft); edit follows in dependency order and ends the run
    assert node_order(graph, {"input": {"topic": "owls"}}) == ["research", "draft", "edit"]
    state = graph.invoke({"input": {"topic": "owls"}})
    assert state["outputs"] == {
        "research": "research-done",
        "draft": "draft-done",
        "edit": "edit-done",
    }
    assert state["status"] == "completed" and state["turns"] == 3
