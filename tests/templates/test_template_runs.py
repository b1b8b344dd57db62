"""The five built-in templates run: each validates and compiles, replays its cassette to
`completed` with an output for every expected step, runs on the deterministic `test` model,
and (slow) runs on the embedded local model to `completed` or a policy stop with a reason.

Cassettes are in tests/fixtures/templates/; re-record them after changing a template's
prompts with ``uv run python -m tests.templates.record_cassettes [NAME ...]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopengt.compile import compile_spec
from loopengt.providers.local import local_model_available
from loopengt.runs.engine import RunOptions, start_run
from loopengt.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
CASSETTES = REPO / "tests" / "fixtures" / "templates"

# the run input of each template: the cassettes were recorded with exactly these
INPUTS: dict[str, dict[str, Any]] = {
    "planner-executor": {
        "task": "Clean this list of emails: remove duplicates and make them lowercase: "
        "Bob@Example.com, bob@example.com, Ann@Test.org",
    },
    "supervisor-workers": {
        "task": "A 100-word announcement of our new CSV export feature for existing customers",
    },
    "reviewer-retry": {
        "draft": "Our new relase is out now. It have many new feature and it are faster. "
        "You should try it, it is very good and very fast.",
    },
    "handoff-loop": {
        "ticket": "Since version 2.3 the app crashes when I export a report to CSV: "
        "'KeyError: date'. I need the export for month-end tomorrow.",
    },
    "research-architect": {
        "topic": "Python web frameworks for a small internal API",
        "questions": [
            "Which frameworks are the main options?",
            "How do they compare on ease of use?",
        ],
    },
}
NAMES = sorted(INPUTS)

# the steps with an output after the replayed run (handoff: the agents that acted)
REPLAYED_STEPS = {
    "planner-executor": {"plan", "execute", "verify"},
    "supervisor-workers": {"research", "write", "review"},
    "reviewer-retry": {"revise", "review"},
    "handoff-loop": {"triage", "bug_investigator", "escalation"},
    "research-architect": {"investigate", "report"},
}
PATTERNS = {
    "planner-executor": "sequential",
    "supervisor-workers": "supervisor_worker",
    "reviewer-retry": "evaluator_optimizer",
    "handoff-loop": "handoff",
    "research-architect": "parallel_fan_out",
}


def spec_path(name: str) -> Path:
    return TEMPLATES / name / "loop.yaml"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory: run state goes to its .loopengt/, no env model leaks in."""
    for var in ("LOOPENGT_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", NAMES)
def test_template_validates_and_compiles(name: str) -> None:
    spec = load_spec(spec_path(name))
    assert spec.name == name and spec.pattern == PATTERNS[name]
    assert set(spec.inputs) == set(INPUTS[name])
    assert spec.metadata["purpose"] and 8 <= len(spec.metadata["keywords"]) <= 20
    assert all(a.model is None for a in spec.agents), "templates use the default model"
    assert (TEMPLATES / name / "README.md").read_text(encoding="utf-8").strip()
    assert compile_spec(spec_path(name), check_models=False) is not None


@pytest.mark.parametrize("name", NAMES)
def test_template_replays_its_cassette_to_completed(name: str, project: Path) -> None:
    cassette = CASSETTES / f"{name}.cassette.yaml"
    result = start_run(
        spec_path(name),
        inputs=INPUTS[name],
        options=RunOptions(replay=str(cassette)),
        root=project,
    )
    assert result.status == "completed", result.stop_reason
    produced = {step for step, value in result.outputs.items() if value not in (None, "", [])}
    assert REPLAYED_STEPS[name] <= produced


@pytest.mark.parametrize("name", NAMES)
def test_template_runs_on_the_test_model(name: str, project: Path) -> None:
    result = start_run(
        spec_path(name), inputs=INPUTS[name], options=RunOptions(model="test"), root=project
    )
    assert result.status == "completed", result.stop_reason
    assert result.outputs


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="the local model is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_template_runs_on_the_local_model(name: str, project: Path) -> None:
    result = start_run(
        spec_path(name), inputs=INPUTS[name], options=RunOptions(model="local"), root=project
    )
    assert result.status in ("completed", "stopped"), result.stop_reason
    if result.status == "stopped":
        assert result.stop_reason
