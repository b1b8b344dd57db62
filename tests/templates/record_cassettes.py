"""Re-record the template cassettes of tests/fixtures/templates/ (after a prompt changes):

    uv run python -m tests.templates.record_cassettes [NAME ...]

Each is recorded from a run that completes: on the local model where it completes (it
samples, so a run that stops, e.g. on a gate, is recorded again, up to three times); the
handoff loop on the test model handing off triage -> bug_investigator -> escalation (the
tiny local model rarely hands off, so its cassette would not show a handoff); the supervisor
loop on a scripted team that researches, writes and reviews (the local model rarely routes
that well).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from loopengt.compile import compile_spec
from loopengt.providers.testing import ScriptedModel
from loopengt.runs.engine import RunOptions, start_run
from tests.templates.test_template_runs import CASSETTES, INPUTS, spec_path

MODELS = {
    "planner-executor": "local",
    "reviewer-retry": "local",
    "research-architect": "local",
    "handoff-loop": "test:transfers=bug_investigator+escalation",
}

ATTEMPTS = 3
NOTES = (
    "- CSV export is new in this release: any report can be downloaded as a CSV file.\n"
    "- It keeps the report's filters and column order.\n"
    "- Customers asked for it to move data into spreadsheets and BI tools."
)
PIECE = (
    "CSV export is here. From today, every report can be downloaded as a CSV file with one "
    "click, keeping your filters and column order, ready for spreadsheets and BI tools."
)


def team_reply(messages: list[BaseMessage]) -> str:
    """A well-behaved team: research, write, review (approved); the lead routes in order."""
    system = next((str(m.text) for m in messages if isinstance(m, SystemMessage)), "")
    asked = "\n".join(str(m.text) for m in messages if isinstance(m, HumanMessage))
    if "Who acts next?" in asked:
        if "[writer / write]" in asked:
            route = {"next": "reviewer", "task": "Review the draft against the assignment."}
        elif "[researcher / research]" in asked:
            route = {"next": "writer", "task": "Write the announcement from the notes."}
        else:
            route = {"next": "researcher", "task": "Collect the facts about CSV export."}
        return json.dumps(route)
    if system.startswith("You are an exacting reviewer"):
        return json.dumps({"verdict": "approved", "notes": "Clear, accurate and on length."})
    if system.startswith("You are a researcher"):
        return NOTES
    return PIECE


def record_supervisor(path: Path) -> str:
    graph = compile_spec(
        spec_path("supervisor-workers"), models=ScriptedModel(fallback=team_reply), record=path
    )
    final = graph.invoke({"input": INPUTS["supervisor-workers"]})
    return f"{final['status']} ({final.get('stop_reason')})"


def record_run(name: str, path: Path, root: Path) -> str:
    options = RunOptions(model=MODELS[name], record=str(path))
    for attempt in range(1, ATTEMPTS + 1):
        result = start_run(
            spec_path(name), inputs=INPUTS[name], options=options, root=root / str(attempt)
        )
        if result.status == "completed":
            break
    return f"{result.status} ({result.stop_reason}) after {attempt} run(s)"


def main(names: list[str]) -> None:
    for name in names or sorted(INPUTS):
        path = CASSETTES / f"{name}.cassette.yaml"
        with tempfile.TemporaryDirectory() as root:
            if name == "supervisor-workers":
                outcome = record_supervisor(path)
            else:
                outcome = record_run(name, path, Path(root))
        print(f"{name}: {outcome} -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
