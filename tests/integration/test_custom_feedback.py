"""Issue 12: `examples/custom-draft-check.yaml` passes the checker's feedback to the writer
(its `check` step is a verdict, which fills {{feedback}}), and validation warns where a
custom graph's prompt uses {{feedback}} that no verdict can fill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loopengt.compile import compile_spec
from loopengt.spec import load_spec
from loopengt.spec.loader import spec_warnings
from tests.integration.clients import chat_model
from tests.support.openai_server import JsonReply, Reply, ScriptedOpenAIServer, last_user_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-draft-check.yaml"


def test_the_checkers_feedback_reaches_the_next_draft() -> None:
    replies: list[Reply] = [
        "Dark mode is here.",
        JsonReply({"pass": False, "feedback": "mention the login fix"}),
        "Dark mode is here, and logging in works again.",
        JsonReply({"pass": True, "feedback": ""}),
    ]
    with ScriptedOpenAIServer(replies) as server:
        graph = compile_spec(load_spec(EXAMPLE), models=chat_model(server))
        state = graph.invoke({"input": {"changes": "dark mode; login fix"}})
        requests = server.requests
    assert state["status"] == "completed", state.get("stop_reason")
    assert state["verdicts"]["check"]["pass"] is True
    assert "mention the login fix" not in last_user_text(requests[0])
    assert "mention the login fix" in last_user_text(requests[2])  # the second draft's prompt


def test_feedback_no_verdict_can_fill_is_a_warning_not_an_error(tmp_path: Path) -> None:
    broken = EXAMPLE.read_text().replace("    output_schema:", "    old_schema:", 1)
    broken = "\n".join(
        line for line in broken.splitlines() if "old_schema" not in line and "pass:" not in line
    )
    broken = broken.replace("      type: object\n", "").replace("      properties:\n", "")
    lines = [
        line
        for line in broken.splitlines()
        if not line.startswith(("        feedback:", "      required:"))
    ]
    spec = tmp_path / "nocheck.yaml"
    spec.write_text("\n".join(lines) + "\n")
    load_spec(spec)  # still valid
    [warning] = spec_warnings(spec.read_text(), filename=str(spec))
    assert warning.startswith(f"{spec}:17:")
    assert "steps[0].prompt: warning: {{feedback}} is always empty: no step gives a verdict" in (
        warning
    )
    shown = subprocess.run(
        [sys.executable, "-m", "loopengt", "validate", str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0
    assert shown.stderr.strip().splitlines() == [warning]
    as_json = subprocess.run(
        [sys.executable, "-m", "loopengt", "validate", str(spec), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(as_json.stdout)[0]["warnings"] == [warning]
    assert spec_warnings(EXAMPLE.read_text()) == []
