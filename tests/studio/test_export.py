"""`loopengt studio`: the two files it writes, the graph a factory returns (input and output
schemas, approvals, failed and stopped loops) and the command's refusals. The server itself
is in test_server.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from langgraph_cli.config import get_unknown_keys, validate_config_file

from loopengt.studio import LoopNotCompleted, export_studio, studio_graph
from loopengt.studio import graph as studio_graph_module
from tests.studio.helpers import EXAMPLE, cli, load_module, make_project, write_spec
from tests.support.openai_server import ErrorReply, ScriptedOpenAIServer

TYPED = """
    name: typed inputs
    goal: Review files.
    description: Reviews each file, then sums up.
    pattern: parallel_fan_out
    inputs:
      files: {description: The files to review.}
      focus: {description: What to look for., default: bugs}
      rounds: {description: How many passes., default: 2}
      strict: {default: false}
      tags: {description: Labels., default: [a, b]}
      note-to-self: {description: Anything else., required: false}
    agents:
      - name: reviewer
    steps:
      - name: review
        agent: reviewer
        prompt: "Review {{item}} for {{input.focus}}."
      - name: sum
        agent: reviewer
        depends_on: [review]
        prompt: "Sum up: {{review}}"
    fan_out: {map_step: review, map_over: input.files, aggregator: sum}
"""

APPROVAL = """
    name: publish
    goal: Draft, then publish once approved.
    inputs:
      topic: {description: The topic.}
    agents:
      - name: writer
    steps:
      - {name: draft, agent: writer, prompt: "Write about {{input.topic}}."}
      - {name: post, agent: writer, depends_on: [draft], prompt: "Publish: {{draft}}"}
    policy:
      approvals: [post]
"""

STOPS = """
    name: stops
    goal: Two steps with one turn allowed.
    agents:
      - name: writer
    steps:
      - {name: one, agent: writer, prompt: "Say one."}
      - {name: two, agent: writer, depends_on: [one], prompt: "Say two after {{one}}."}
    policy:
      max_turns: 1
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOPENGT_PROJECT", raising=False)
    monkeypatch.delenv("LOOPENGT_MODEL", raising=False)
    return make_project(tmp_path)


def test_export_names_the_graph_and_the_form_shows_the_declared_inputs(
    project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "studio"
    written = export_studio([EXAMPLE], out, project=project)

    document = json.loads((out / "langgraph.json").read_text())
    assert document["dependencies"] == ["."]
    assert document["graphs"] == {
        "research-brief": {
            "path": "./loopengt_graphs.py:make_research_brief",
            "description": "Write a short, accurate brief on a topic for a busy engineer.",
        }
    }
    # the LangGraph CLI's own validator accepts it, with no unknown-key warning
    assert validate_config_file(out / "langgraph.json")["graphs"]
    assert get_unknown_keys(document) == []
    assert written.graphs == {"research-brief": "make_research_brief"}

    module = load_module(out / "loopengt_graphs.py")
    graph = module.make_research_brief()
    assert module.make_research_brief() is graph  # compiled once
    assert graph.checkpointer is None and graph.store is None
    schema = graph.get_input_jsonschema()
    assert schema["properties"] == {
        "topic": {"description": "What the brief is about.", "title": "Topic", "type": "string"}
    }
    assert schema["required"] == ["topic"]
    assert set(graph.get_output_jsonschema()["properties"]) == {
        "outputs",
        "status",
        "stop_reason",
    }
    # the loop's steps are a subgraph: Studio draws them
    drawn = graph.get_graph(xray=True).draw_mermaid()
    assert all(step in drawn for step in ("facts", "draft", "title"))


def test_graphs_are_built_on_import_and_factories_only_look_them_up(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server imports the module off its event loop, once per graph it names, and calls
    a factory on the loop for every request: no compile may happen there."""
    out = tmp_path / "studio"
    stops = write_spec(project, "stops.yaml", STOPS)
    export_studio([EXAMPLE, stops], out, project=project)
    first = load_module(out / "loopengt_graphs.py")

    def no_compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(studio_graph_module, "studio_graph", no_compile)
    second = load_module(out / "loopengt_graphs.py")  # the server's next graph: cached
    assert second.make_stops() is first.make_stops() is first.GRAPHS["stops"]
    assert second.make_research_brief() is first.GRAPHS["research-brief"]


def test_input_fields_are_typed_described_and_defaulted(project: Path) -> None:
    spec = write_spec(project, "typed.yaml", TYPED)
    graph = studio_graph(spec, project=project)
    schema = graph.get_input_jsonschema()
    fields = schema["properties"]
    assert list(fields) == ["files", "focus", "rounds", "strict", "tags", "note-to-self"]
    assert fields["files"]["type"] == "array"  # mapped over
    assert fields["focus"] == {
        "default": "bugs",
        "description": "What to look for.",
        "title": "Focus",
        "type": "string",
    }
    assert (fields["rounds"]["type"], fields["rounds"]["default"]) == ("integer", 2)
    assert (fields["strict"]["type"], fields["strict"]["default"]) == ("boolean", False)
    assert (fields["tags"]["type"], fields["tags"]["default"]) == ("array", ["a", "b"])
    assert fields["note-to-self"]["description"] == "Anything else."
    assert schema["required"] == ["files"]
    assert schema["description"] == "Reviews each file, then sums up."

    state = graph.invoke({"files": ["a.py", "b.py"]})
    assert state["status"] == "completed"
    assert set(state["outputs"]) == {"review", "sum"}
    assert "for bugs" in str(state["outputs"]["review"][0])  # the default filled in


def test_a_missing_input_is_named_without_command_line_hints(project: Path) -> None:
    spec = write_spec(project, "typed.yaml", TYPED)
    with pytest.raises(Exception, match="missing input 'files'") as raised:
        studio_graph(spec, project=project).invoke({})
    assert "--input" not in str(raised.value)


def test_an_approval_pauses_the_run_and_resuming_skips_finished_steps(project: Path) -> None:
    spec = write_spec(project, "publish.yaml", APPROVAL)
    graph = studio_graph(spec, project=project).copy(update={"checkpointer": InMemorySaver()})
    thread = {"configurable": {"thread_id": "t1"}}

    graph.invoke({"topic": "tides"}, thread)
    paused = graph.get_state(thread)
    assert paused.next == ("loop",)
    assert paused.interrupts[0].value["step"] == "post"

    updates: list[Any] = []
    for namespace, update in graph.stream(
        Command(resume={"approved": True, "comment": "ok"}),
        thread,
        stream_mode="updates",
        subgraphs=True,
    ):
        updates.append((namespace, update))
    inner = [name for ns, update in updates if ns for name in update]
    assert inner == ["post"]  # draft was not run again
    final = graph.get_state(thread).values
    assert final["status"] == "completed"
    assert set(final["outputs"]) == {"draft", "post"}


def test_a_stopped_loop_is_an_error_with_its_outputs_kept(project: Path) -> None:
    spec = write_spec(project, "stops.yaml", STOPS)
    graph = studio_graph(spec, project=project).copy(update={"checkpointer": InMemorySaver()})
    thread = {"configurable": {"thread_id": "t1"}}
    with pytest.raises(LoopNotCompleted, match=r"^stopped: max_turns: "):
        graph.invoke({}, thread)
    state = graph.get_state(thread)
    assert state.next == ("outcome",)
    assert state.values["status"] == "stopped"
    assert state.values["stop_reason"].startswith("max_turns: ")
    assert list(state.values["outputs"]) == ["one"]


def test_a_failed_model_call_never_suggests_loopengt_resume(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(
        project,
        "fails.yaml",
        """
        name: fails
        goal: Say hello.
        agents:
          - {name: writer, model: "openai:test-model"}
        steps:
          - {name: write, agent: writer, prompt: Say hello.}
        policy:
          retry: {attempts: 2, backoff_seconds: 0.01}
        """,
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ScriptedOpenAIServer([ErrorReply(500)] * 2) as server:
        make_project(project, f'[llm]\nbase_url = "{server.base_url}"\n')
        graph = studio_graph(spec, project=project).copy(update={"checkpointer": InMemorySaver()})
        thread = {"configurable": {"thread_id": "t1"}}
        seen: list[str] = []
        with pytest.raises(LoopNotCompleted) as raised:
            for item in graph.stream({}, thread, stream_mode="updates", subgraphs=True):
                seen.append(str(item))
        assert server.request_count == 2
    message = str(raised.value)
    assert message.startswith("failed: error: step 'write' failed after 2 attempt(s)")
    assert "server error 500" in message and "retry later" in message
    state = graph.get_state(thread)
    shown = "\n".join([message, *seen, json.dumps(state.values, default=str)])
    assert "loopengt resume" not in shown
    assert state.values["status"] == "failed"


# -- the command --------------------------------------------------------------------------------


def test_the_command_writes_into_the_project_and_rewrites_its_own_files(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = project / "sub"
    sub.mkdir()
    os.chdir(sub)  # the project is found upwards, as `loopengt run` finds it
    code, out, err = cli(capsys, "studio", EXAMPLE)
    assert (code, err) == (0, "")
    assert "wrote " in out and "research-brief" in out and "langgraph dev" in out
    module = project / "loopengt_graphs.py"
    assert 'PROJECT = HERE / "."' in module.read_text()
    first = (project / "langgraph.json").read_text()

    spec = write_spec(project, "stops.yaml", STOPS)
    code, out, err = cli(capsys, "studio", EXAMPLE, spec)
    assert code == 0, err
    assert set(json.loads((project / "langgraph.json").read_text())["graphs"]) == {
        "research-brief",
        "stops",
    }
    assert (project / "langgraph.json").read_text() != first
    graphs = load_module(module)
    assert graphs.make_stops().get_input_jsonschema()["properties"] == {}


def test_a_spec_that_does_not_validate_is_exit_2_with_its_lines(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_spec(
        project,
        "bad.yaml",
        """
        name: bad
        goal: Broken.
        agents:
          - name: writer
        steps:
          - {name: one, agent: nobody, prompt: Hi.}
        """,
    )
    code, _, err = cli(capsys, "studio", EXAMPLE, bad)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines and all(line.startswith(f"{bad}:6:") for line in lines), err
    assert "nobody" in err and "Traceback" not in err
    assert not (project / "langgraph.json").exists()
    assert not (project / "loopengt_graphs.py").exists()


@pytest.mark.parametrize("name", ["langgraph.json", "loopengt_graphs.py"])
def test_a_file_loopengt_did_not_write_is_left_alone(
    project: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    theirs = project / name
    content = '{"graphs": {"mine": "./agent.py:graph"}}\n' if name.endswith("json") else "x=1\n"
    theirs.write_text(content)
    code, _, err = cli(capsys, "studio", EXAMPLE)
    assert code == 2
    assert err.strip() == (
        f"error: {name} was not written by loopengt studio; "
        "leaving it alone (move it, or pass --out DIR)"
    )
    assert theirs.read_text() == content
    assert len(list(project.glob("langgraph.json")) + list(project.glob("*.py"))) == 1


def test_two_specs_with_one_name_and_a_reserved_input_name_are_refused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = write_spec(project, "copy.yaml", EXAMPLE.read_text())
    code, _, err = cli(capsys, "studio", EXAMPLE, copy)
    assert code == 2 and "another spec is also named 'research-brief'" in err
    reserved = STOPS.replace("agents:", "inputs: {status: {}}\n    agents:")
    clash = write_spec(project, "clash.yaml", reserved)
    code, _, err = cli(capsys, "studio", clash)
    assert code == 2 and "input 'status': the Studio graph uses that name itself" in err
    assert not (project / "langgraph.json").exists()


def test_serve_without_the_studio_extra_names_it(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "langgraph_cli", None)  # import fails, as uninstalled
    code, _, err = cli(capsys, "studio", EXAMPLE, "--serve")
    assert code == 2
    assert err.strip() == (
        "error: --serve needs langgraph-cli: install the studio extra: uv sync --extra studio "
        "(or pip install 'loopengt[studio]')"
    )
    assert not (project / "langgraph.json").exists()


def test_serve_checks_the_models_before_anything_is_written(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(project, '[llm]\nmodel = "openai:gpt-4o-mini"\n')
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = cli(capsys, "studio", EXAMPLE, "--serve", "--port", "1")
    assert code == 2 and "OPENAI_API_KEY" in err, err
    assert not (project / "langgraph.json").exists()
