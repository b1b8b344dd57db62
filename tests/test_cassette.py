"""Record/replay of model calls with fake chat models: a recorded run replays with no model
at all (same outputs, usage and node order), tool calls, structured output and parallel
map branches replay, a changed spec gives a mismatch that names the step and fails the run,
secrets never reach the file, and a bad cassette is a one-line UserInputError."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

import loopengt.providers.registry
from loopengt.compile import compile_spec
from loopengt.errors import UserInputError
from loopengt.providers.cassette import difference
from loopengt.redaction import REDACTED, redact
from tests.compilers.helpers import RecordingFake, fake, node_order, spec_of, with_usage
from tests.tracing.runner import kinds, lines_of
from tests.tracing.runner import record as trace_run

SEQ = """
    name: owls
    goal: Count the owls.
    inputs: {site: {description: Where.}}
    defaults: {model: "openai:test-model"}
    agents: [{name: planner}, {name: writer}]
    steps:
      - {name: plan, agent: planner, prompt: "Plan a count at {{input.site}}."}
      - {name: count, agent: planner, depends_on: [plan], prompt: "Count as planned: {{plan}}"}
      - {name: report, agent: writer, depends_on: [count], prompt: "Report on: {{count}}"}
"""
INPUT = {"input": {"site": "Elm Wood"}}


def three_replies() -> RecordingFake:
    return fake(
        with_usage("Walk the wood.\nThen count at dusk.", 11, 7),
        with_usage("12 owls", 9, 3),
        with_usage("Report: 12 owls at Elm Wood.", 8, 4),
    )


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No model can be resolved: replay must not try."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOOPENGT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("replay resolved a model")

    monkeypatch.setattr(loopengt.providers.registry, "resolve_model", refuse)


def record(spec_text: str, model: Any, path: Path, payload: Any = INPUT) -> dict[str, Any]:
    graph = compile_spec(spec_of(spec_text), models=model, record=path)
    return graph.invoke(payload)  # type: ignore[no-any-return]


def calls_of(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["calls"]  # type: ignore[no-any-return]


def test_record_then_replay_gives_the_same_outputs_usage_and_node_order(
    tmp_path: Path, no_model: None
) -> None:
    path = tmp_path / "owls.yaml"
    model = three_replies()
    recorded = record(SEQ, model, path)
    assert recorded["status"] == "completed" and model.calls == 3

    graph = compile_spec(spec_of(SEQ), replay=path)  # check_models passes with no model
    replayed = graph.invoke(INPUT)

    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert (
        replayed["outputs"]
        == recorded["outputs"]
        == {
            "plan": "Walk the wood.\nThen count at dusk.",
            "count": "12 owls",
            "report": "Report: 12 owls at Elm Wood.",
        }
    )
    assert replayed["usage"] == recorded["usage"]
    assert replayed["usage"]["total_tokens"] == 42 and replayed["turns"] == 3
    assert [m.usage_metadata for m in replayed["messages"]] == [
        m.usage_metadata for m in recorded["messages"]
    ]
    # the same compiled graph replays again (answers are reused run after run)
    assert node_order(graph, INPUT) == ["plan", "count", "report"]
    assert model.calls == 3


def test_a_recorded_run_traces_each_model_call_once(tmp_path: Path) -> None:
    spec = spec_of(SEQ)
    graph = compile_spec(spec, models=three_replies(), record=tmp_path / "owls.yaml")

    trace_run(graph, spec, tmp_path, payload=INPUT)

    calls = kinds(lines_of(tmp_path), "model_call")
    assert [c["response"] for c in calls] == [
        "Walk the wood.\nThen count at dusk.",
        "12 owls",
        "Report: 12 owls at Elm Wood.",
    ]
    assert sum(c["input_tokens"] for c in calls) == 28


def test_the_file_is_readable_yaml_with_a_header_and_one_entry_per_call(tmp_path: Path) -> None:
    path = tmp_path / "owls.yaml"
    record(SEQ, three_replies(), path)

    text = path.read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == ["version", "spec", "recorded_at", "calls"]
    assert doc["version"] == 1 and doc["spec"] == "owls"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", doc["recorded_at"])
    assert [(c["step"], c["call"]) for c in doc["calls"]] == [
        ("plan", 1),
        ("count", 1),
        ("report", 1),
    ]
    first = doc["calls"][0]
    assert list(first) == ["step", "call", "request", "response"]
    assert first["request"] == {
        "messages": [
            {"role": "system", "content": "You are planner."},
            {"role": "user", "content": "Plan a count at Elm Wood."},
        ]
    }
    assert first["response"] == {
        "content": "Walk the wood.\nThen count at dusk.",
        "usage_metadata": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18},
    }
    # multi-line text is a block scalar, not a quoted string with \n
    assert "content: |-\n      Walk the wood.\n      Then count at dusk.\n" in text
    assert "&id" not in text and "*id" not in text


def test_a_changed_prompt_fails_the_run_naming_the_step(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "owls.yaml"
    record(SEQ, three_replies(), path)
    changed = SEQ.replace("Report on: {{count}}", "Summarise: {{count}}")

    state = compile_spec(spec_of(changed), replay=path).invoke(INPUT)  # never raises

    assert state["status"] == "failed"
    reason = state["stop_reason"]
    assert reason.startswith("error: step 'report' failed after 1 attempt(s): replay of owls.yaml")
    assert "step 'report' call 1 does not match the cassette" in reason
    assert 'message 2 (user) content differs: recorded "Report on: 12 owls", now "Summarise' in (
        reason
    )
    assert reason.endswith("re-record with --record") and "\n" not in reason
    assert state["outputs"] == {"plan": "Walk the wood.\nThen count at dusk.", "count": "12 owls"}


def test_a_step_the_cassette_never_saw_is_named(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "owls.yaml"
    record(SEQ, three_replies(), path)
    renamed = SEQ.replace("name: report", "name: summary")

    state = compile_spec(spec_of(renamed), replay=path).invoke(INPUT)

    assert state["status"] == "failed"
    assert (
        "step 'summary' call 1 does not match the cassette (the cassette has no model "
        in (state["stop_reason"])
    )


TOOLS = """
    name: tally
    goal: Add up sightings.
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
    agents: [{name: counter, tools: [add]}]
    steps:
      - {name: total, prompt: "Add 2 and 3."}
"""


def test_tool_calls_are_recorded_with_their_schemas_and_replay(
    tmp_path: Path, no_model: None
) -> None:
    path = tmp_path / "tally.yaml"
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-7"}
    model = fake(AIMessage(content="", tool_calls=[call]), with_usage("5 in total.", 20, 4))
    recorded = record(TOOLS, model, path, {"input": {}})

    first, second = calls_of(path)
    assert [t["name"] for t in first["request"]["tools"]] == ["add"]
    assert first["request"]["tools"][0]["description"] == "Add two integers."
    assert first["request"]["tools"][0]["parameters"]["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "integer"},
    }
    assert first["response"]["tool_calls"] == [call]
    assert (second["step"], second["call"]) == ("total", 2)
    assert second["request"]["messages"][2:] == [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "5", "tool_call_id": "call-7"},
    ]

    replayed = compile_spec(spec_of(TOOLS), replay=path).invoke({"input": {}})

    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert replayed["outputs"] == recorded["outputs"] == {"total": "5 in total."}
    assert replayed["usage"] == recorded["usage"]
    ai, tool, final = replayed["messages"]
    assert ai.tool_calls == [{**call, "type": "tool_call"}]
    assert isinstance(tool, ToolMessage) and tool.content == "5"  # the tool ran again
    assert final.content == "5 in total."


def test_a_changed_tool_schema_is_a_mismatch(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "tally.yaml"
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-7"}
    record(TOOLS, fake(AIMessage(content="", tool_calls=[call]), "5"), path, {"input": {}})
    changed = TOOLS.replace('"tests.compilers.helpers:add"}', '"tests.compilers.helpers:explode"}')

    state = compile_spec(spec_of(changed), replay=path).invoke({"input": {}})

    assert state["status"] == "failed"
    assert (
        "step 'total' call 1 does not match the cassette (the description or schema of "
        in (state["stop_reason"])
    )


def test_difference_names_what_changed() -> None:
    tool = {"name": "add", "description": "Add.", "parameters": {}}
    base = {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    assert difference(base, {**base, "tools": []}) == "the tools differ: recorded ['add'], now []"
    longer = {**base, "messages": [*base["messages"], {"role": "user", "content": "more"}]}
    assert difference(base, longer) == "2 messages instead of the recorded 1"
    schema = {**base, "response_format": {"type": "json_object"}}
    assert difference({**base, "response_format": {}}, schema) == (
        "the response_format (output schema) differs"
    )


DESK = """
    name: desk
    goal: Answer the customer.
    pattern: handoff
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
    agents:
      - {name: triage, tools: [add], handoffs: [billing]}
      - {name: billing}
    steps: []
    handoff: {entry: triage, max_handoffs: 2}
"""


def test_a_handoff_with_a_tool_and_a_transfer_replays(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "desk.yaml"
    add = {"name": "add", "args": {"a": 2, "b": 40}, "id": "c1"}
    move = {"name": "transfer_to_billing", "args": {"task": "Refund 42"}, "id": "c2"}
    triage = fake(AIMessage(content="", tool_calls=[add]), AIMessage(content="", tool_calls=[move]))
    models = {"triage": triage, "billing": fake("Refunded 42.")}
    recorded = record(DESK, models, path, {"input": {}})
    assert [(c["step"], c["call"]) for c in calls_of(path)] == [
        ("triage", 1),
        ("triage", 2),
        ("billing", 1),
    ]
    assert {t["name"] for t in calls_of(path)[0]["request"]["tools"]} == {
        "add",
        "transfer_to_billing",
    }

    order = node_order(compile_spec(spec_of(DESK), replay=path), {"input": {}})
    replayed = compile_spec(spec_of(DESK), replay=path).invoke({"input": {}})

    assert order == ["triage", "billing"]
    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert replayed["outputs"] == recorded["outputs"]
    assert replayed["outputs"]["billing"] == "Refunded 42."
    assert replayed["task"] == recorded["task"]


STRUCTURED = """
    name: plan
    goal: Plan a count.
    agents: [{name: planner}]
    steps:
      - name: plan
        prompt: Plan it.
        output_schema:
          type: object
          properties:
            title: {type: string, maxLength: 40}
            sites: {type: array, items: {type: string, maxLength: 20}}
          required: [title, sites]
"""


def test_structured_output_steps_replay_including_a_repair(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "plan.yaml"
    model = fake("not json at all", '{"title": "Owls", "sites": ["Elm Wood", "Fen"]}')
    recorded = record(STRUCTURED, model, path, {"input": {}})
    assert [(c["step"], c["call"]) for c in calls_of(path)] == [("plan", 1), ("plan", 2)]

    replayed = compile_spec(spec_of(STRUCTURED), replay=path).invoke({"input": {}})

    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert replayed["outputs"] == recorded["outputs"]
    assert replayed["outputs"]["plan"] == {"title": "Owls", "sites": ["Elm Wood", "Fen"]}


def test_a_changed_output_schema_is_a_mismatch(tmp_path: Path, no_model: None) -> None:
    # the method of asking is ignored on replay (it may differ); the schema is not
    path = tmp_path / "plan.yaml"
    record(STRUCTURED, fake('{"title": "Owls", "sites": ["Fen"]}'), path, {"input": {}})
    changed = STRUCTURED.replace("maxLength: 40", "maxLength: 60")

    state = compile_spec(spec_of(changed), replay=path).invoke({"input": {}})

    assert state["status"] == "failed"
    assert "step 'plan' call 1 does not match the cassette" in state["stop_reason"]


MAP = """
    name: pages
    goal: Summarise each page.
    pattern: parallel_fan_out
    inputs: {pages: {description: The pages.}}
    agents: [{name: reader}, {name: editor}]
    steps:
      - {name: summarise, agent: reader, prompt: "Summarise {{item}}."}
      - {name: report, agent: editor, description: Join the summaries.}
    fan_out: {map_step: summarise, map_over: input.pages, aggregator: report}
"""
ITEM = re.compile(r"Summarise (\w+)\.")


def test_parallel_map_branches_replay_by_request_content(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "pages.yaml"
    delays = {"p1": 0.3, "p2": 0.0, "p3": 0.15}  # they finish in the order p2, p3, p1

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        item = ITEM.search(str(messages[-1].content))
        assert item is not None
        time.sleep(delays[item.group(1)])
        return with_usage(f"summary of {item.group(1)}", 5, len(item.group(1)))

    reader = RecordingFake(respond=respond)
    payload = {"input": {"pages": ["p1", "p2", "p3"]}}
    models = {"reader": reader, "editor": fake("all three pages")}
    recorded = record(MAP, models, path, payload)
    calls = calls_of(path)
    mapped = [c for c in calls if c["step"] == "summarise"]
    assert [c["call"] for c in mapped] == [1, 2, 3]
    assert [c["response"]["content"] for c in mapped] == [
        "summary of p2",
        "summary of p3",
        "summary of p1",
    ]
    # reorder the map's entries: replay must match by content, not by position
    doc = yaml.safe_load(path.read_text())
    doc["calls"] = [*reversed(mapped), *(c for c in calls if c["step"] != "summarise")]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    replayed = compile_spec(spec_of(MAP), replay=path).invoke(payload)

    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert replayed["outputs"] == recorded["outputs"]
    assert replayed["outputs"]["summarise"] == ["summary of p1", "summary of p2", "summary of p3"]
    assert replayed["usage"] == recorded["usage"]


def test_secrets_never_reach_the_cassette(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model: None
) -> None:
    secret = "hunter2-very-secret-value"
    sk_key = "sk-proj-abc123def456ghi789jkl"
    monkeypatch.setenv("MY_API_KEY", secret)
    path = tmp_path / "owls.yaml"
    site = f"Elm Wood {secret} {sk_key} Authorization: Bearer tok.en-12345678"
    payload = {"input": {"site": site}}
    model = fake(f"Use {secret} to count.", "12 owls", "Report.")

    recorded = record(SEQ, model, path, payload)

    text = path.read_text()
    assert secret not in text and sk_key not in text and "tok.en-12345678" not in text
    first = calls_of(path)[0]
    assert first["request"]["messages"][1]["content"] == (
        f"Plan a count at Elm Wood {REDACTED} {REDACTED} Authorization: Bearer {REDACTED}."
    )
    assert first["response"]["content"] == f"Use {REDACTED} to count."
    # the live request is redacted the same way, so the cassette still replays
    replayed = compile_spec(spec_of(SEQ), replay=path).invoke(payload)
    assert replayed["status"] == "completed", replayed.get("stop_reason")
    assert replayed["outputs"]["report"] == recorded["outputs"]["report"]


def test_redact_only_what_looks_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "token-value-1")
    monkeypatch.setenv("SHORT_KEY", "abc")  # under 8 characters: too common to replace
    monkeypatch.setenv("MY_KEYBOARD", "layout-qwerty")  # not a secret's name
    text = "token-value-1 abc layout-qwerty sk-learn-estimators sk-live0123456789abcdef"
    assert redact({"a": [text]}) == {
        "a": [f"{REDACTED} abc layout-qwerty sk-learn-estimators {REDACTED}"]
    }


def test_each_call_is_saved_at_once_so_a_killed_run_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "owls.yaml"
    counter = itertools.count(1)
    seen_on_disk: list[int] = []

    def respond(messages: list[BaseMessage]) -> BaseMessage:
        number = next(counter)
        seen_on_disk.append(len(calls_of(path)) if path.exists() else 0)
        if number == 3:
            raise RuntimeError("the process dies here")
        return AIMessage(content=f"answer {number}")

    state = record(SEQ, RecordingFake(respond=respond), path)

    assert state["status"] == "failed"
    assert seen_on_disk == [0, 1, 2]  # every earlier call was on disk before the next began
    assert [c["response"]["content"] for c in calls_of(path)] == ["answer 1", "answer 2"]
    assert [p.name for p in tmp_path.iterdir()] == ["owls.yaml"]  # no temp files left


def test_recording_wraps_a_resolved_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = three_replies()
    names: list[str | None] = []

    def resolve(name: str | None, **kwargs: Any) -> Any:
        names.append(name)
        return resolved

    monkeypatch.setattr(loopengt.providers.registry, "resolve_model", resolve)
    path = tmp_path / "owls.yaml"
    state = compile_spec(spec_of(SEQ), record=path).invoke(INPUT)

    assert state["status"] == "completed"
    assert set(names) == {"openai:test-model"} and resolved.calls == 3
    assert [c["step"] for c in calls_of(path)] == ["plan", "count", "report"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cassette {path} not found; record one with --record"),
        ("calls: [\n  - {step: a\n", "cassette {path} is not valid YAML (line 2): expected"),
        ("- a\n- list\n", "is not a loopengt cassette: expected a mapping with 'version'"),
        ("version: 9\ncalls: []\n", "is not a loopengt cassette: version 9 is not supported"),
        ("version: 1\n", "is not a loopengt cassette: 'calls' is missing or not a list"),
        (
            "version: 1\ncalls:\n- {step: a, response: {}}\n",
            "is not a loopengt cassette: call 1 needs 'step', 'request' (with 'messages')",
        ),
    ],
)
def test_a_missing_or_corrupt_cassette_is_a_one_line_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)

    with pytest.raises(UserInputError) as caught:
        compile_spec(spec_of(SEQ), replay=path)

    assert message.format(path=path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_existing_cassette_survives_a_run_that_cannot_start(tmp_path: Path) -> None:
    path = tmp_path / "owls.yaml"
    path.write_text("kept")
    graph = compile_spec(spec_of(SEQ), models=fake("x"), record=path)
    assert path.read_text() == "kept"  # nothing recorded yet
    graph.invoke(INPUT)
    assert calls_of(path)[0]["response"]["content"] == "x"


def test_an_unwritable_cassette_path_fails_at_compile_time(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"cannot write cassette .*: not writable"):
        compile_spec(spec_of(SEQ), models=fake(), record=tmp_path)  # a directory


def test_record_and_replay_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="record and replay cannot be combined"):
        compile_spec(spec_of(SEQ), record=tmp_path / "a.yaml", replay=tmp_path / "b.yaml")
