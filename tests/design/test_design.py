"""`loopengt design` through the real ChatOpenAI client against a scripted OpenAI-compatible
server: a valid design, one repair round, garbage (fallback), a server that is down, and bad
arguments. Every written spec is checked with the real validator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loopengt.design import Design, design
from loopengt.spec import load_spec
from tests.runs.helpers import loopengt, make_project
from tests.support.openai_server import JsonReply, ScriptedOpenAIServer, last_user_text

GOAL = "Review a pull request's diff and write actionable review comments."

SPEC: dict[str, Any] = {
    "name": "pr-review",
    "description": "Reads a diff, finds problems, writes review comments.",
    "goal": GOAL,
    "pattern": "sequential",
    "inputs": {"diff": {"description": "The unified diff to review."}},
    "agents": [
        {"name": "reader", "description": "understands the change", "instructions": "Be exact."},
        {"name": "reviewer", "description": "writes comments", "instructions": "Be kind."},
    ],
    "steps": [
        {"name": "summarize", "agent": "reader", "prompt": "Summarize this diff:\n{{input.diff}}"},
        {
            "name": "comment",
            "agent": "reviewer",
            "depends_on": ["summarize"],
            "prompt": "Goal: {{goal}}\nSummary: {{summarize}}\nWrite review comments.",
        },
    ],
    "policy": {"max_turns": 6, "step_timeout_seconds": 60},
}


def answer(spec: dict[str, Any]) -> JsonReply:
    return JsonReply(
        {
            "task_kind": "code review",
            "pattern_rationale": "Two fixed stages: understand the diff, then comment on it.",
            "spec": spec,
            "verification": "The reviewer quotes the lines it comments on.",
            "risks": ["A large diff may not fit the context."],
        }
    )


def broken_spec() -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["steps"][1]["agent"] = "reviwer"
    spec["steps"][1]["prompt"] += " {{sumarize}}"
    return spec


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path


def run_design(root: Path, server: ScriptedOpenAIServer, **kwargs: Any) -> Design:
    make_project(root, server.base_url)
    return design(GOAL, root=root, **kwargs)


def test_a_valid_design_writes_both_files(project: Path) -> None:
    with ScriptedOpenAIServer([answer(SPEC)]) as server:
        make_project(project, server.base_url)
        result = loopengt(project, "design", GOAL)
        requests = server.requests
    assert result.returncode == 0, result.stderr
    assert "attempt 1 of 3" in result.stderr
    assert "fell back" not in result.stderr
    spec = load_spec(project / "loop.yaml")
    assert spec.name == "pr-review" and [s.name for s in spec.steps] == ["summarize", "comment"]
    doc = (project / "LOOP_DESIGN.md").read_text()
    for section in ("## Goal", "## Pattern", "## Agents", "## Steps", "## Verification"):
        assert section in doc
    assert "Two fixed stages" in doc and "A large diff may not fit" in doc
    assert "```mermaid" in doc and "summarize" in doc.split("```mermaid")[1]
    assert "Fallback" not in doc
    # one request, asking for the design object as structured output
    assert len(requests) == 1
    schema = requests[0]["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) >= {"spec", "pattern_rationale"}
    assert requests[0]["messages"][0]["role"] == "system"
    assert "loop architect" in requests[0]["messages"][0]["content"]


def test_an_invalid_spec_is_repaired_in_one_round(project: Path) -> None:
    with ScriptedOpenAIServer([answer(broken_spec()), answer(SPEC)]) as server:
        lines: list[str] = []
        result = run_design(project, server, on_progress=lines.append)
        requests = server.requests
    assert result.attempts == 2 and result.fallback is None
    assert len(requests) == 2
    repair = last_user_text(requests[1])
    assert "spec.steps[1].agent: unknown agent 'reviwer' (did you mean 'reviewer'?)" in repair
    assert "spec.steps[1].prompt:" in repair and "sumarize" in repair
    # the first answer is shown back to the model before the problems
    assert requests[1]["messages"][-2]["role"] == "assistant"
    assert any("attempt 1 of 3: spec.steps[1]" in line for line in lines)
    assert load_spec(write(project, result)).name == "pr-review"


def write(root: Path, result: Design) -> Path:
    path = root / "out.yaml"
    path.write_text(result.yaml)
    return path


def test_garbage_falls_back_to_the_closest_template(project: Path) -> None:
    replies = ["I would build a nice loop!", "{not json", JsonReply({"spec": {"name": 3}})]
    with ScriptedOpenAIServer(replies) as server:
        make_project(project, server.base_url)
        result = loopengt(project, "design", GOAL)
        assert server.request_count == 3
    assert result.returncode == 0, result.stderr
    assert "fell back" in result.stderr and "reviewer-retry" in result.stderr
    spec = load_spec(project / "loop.yaml")
    assert spec.goal == GOAL and spec.pattern == "evaluator_optimizer"
    doc = (project / "LOOP_DESIGN.md").read_text()
    assert "**Fallback:**" in doc and "reviewer-retry" in doc and "3 attempt(s)" in doc


def test_a_server_that_is_down_is_one_line_and_writes_nothing(project: Path) -> None:
    make_project(project, "http://127.0.0.1:9/v1")  # the discard port: nothing listens
    result = loopengt(project, "design", GOAL)
    assert result.returncode == 2
    assert result.stderr.count("\n") <= 2, result.stderr  # progress line + the reason
    assert "cannot reach the server" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "loop.yaml").exists() and not (project / "LOOP_DESIGN.md").exists()


def test_existing_files_are_kept_and_no_model_is_asked(project: Path) -> None:
    (project / "LOOP_DESIGN.md").write_text("mine")
    with ScriptedOpenAIServer([answer(SPEC)]) as server:
        make_project(project, server.base_url)
        result = loopengt(project, "design", GOAL)
        assert server.request_count == 0
        assert result.returncode == 2
        assert "LOOP_DESIGN.md exists; use --force" in result.stderr
        assert (project / "LOOP_DESIGN.md").read_text() == "mine"
        assert not (project / "loop.yaml").exists()
        forced = loopengt(project, "design", GOAL, "--force", "-o", "mine.yaml")
    assert forced.returncode == 0, forced.stderr
    assert load_spec(project / "mine.yaml").name == "pr-review"


def test_the_asked_pattern_is_enforced(project: Path) -> None:
    fixed = copy.deepcopy(SPEC)
    fixed["pattern"] = "parallel_fan_out"
    fixed["steps"][1]["depends_on"] = []
    fixed["steps"][1]["prompt"] = "Goal: {{goal}}\nWrite review comments on {{input.diff}}."
    fixed["steps"].append(
        {
            "name": "join",
            "agent": "reviewer",
            "depends_on": ["summarize", "comment"],
            "prompt": "{{summarize}}\n{{comment}}",
        }
    )
    fixed["fan_out"] = {"branches": ["summarize", "comment"], "aggregator": "join"}
    with ScriptedOpenAIServer([answer(SPEC), answer(fixed)]) as server:
        result = run_design(project, server, pattern="parallel-fan-out")
        repair = last_user_text(server.requests[1])
    assert "Use the pattern `parallel_fan_out`" in last_user_text(server.requests[0])
    assert "spec.pattern: must be 'parallel_fan_out' as asked" in repair
    assert result.spec.pattern == "parallel_fan_out" and result.attempts == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", "bogus"], "--pattern 'bogus': choose one of sequential"),
        (["--attempts", "0"], "--attempts 0: choose 1 to 10"),
        (["--model", "nosuch:model"], "unknown model provider 'nosuch'"),
    ],
)
def test_bad_arguments_exit_2_before_any_call(project: Path, args: list[str], message: str) -> None:
    with ScriptedOpenAIServer([answer(SPEC)]) as server:
        make_project(project, server.base_url)
        result = loopengt(project, "design", GOAL, *args)
        assert server.request_count == 0
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "loop.yaml").exists()


def test_an_empty_goal_is_refused(project: Path) -> None:
    result = loopengt(project, "design", "   ")
    assert result.returncode == 2
    assert "the goal is empty" in result.stderr


def test_the_test_model_falls_back_without_a_server(project: Path) -> None:
    # the shipped test model answers with JSON sampled from the schema: well-formed, but its
    # names do not refer to each other, so every round fails validation
    result = design("Triage incoming bug reports", model="test", attempts=2, root=project)
    assert result.attempts == 2 and result.fallback is not None
    assert "invalid name 'test name'" in result.fallback and "more)" in result.fallback
    assert result.template == "handoff-loop"


def test_json_output(project: Path) -> None:
    with ScriptedOpenAIServer([answer(SPEC)]) as server:
        make_project(project, server.base_url)
        result = loopengt(project, "design", GOAL, "--json", "--doc", "docs/DESIGN.md")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["fallback"] is None and payload["attempts"] == 1
    assert (project / "docs" / "DESIGN.md").is_file()


def test_a_goal_too_long_is_refused_before_any_call(project: Path) -> None:
    with ScriptedOpenAIServer([answer(SPEC)]) as server:
        make_project(project, server.base_url)
        result = loopengt(project, "design", "x " * 3000)
        assert server.request_count == 0
    assert result.returncode == 2 and "say it in at most 4,000" in result.stderr
