"""What a new user hit (issue 11), each through the real CLI in a fresh project: bad input is
exit 2 before any model call and leaves no run behind, no resume hint where resuming cannot
help, the index shows what a killed run checkpointed, an approval's comment stays in the
trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.cli import run_cli

REPO = Path(__file__).resolve().parents[1]


def loopengt(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(cwd, *args)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text))
    return path


def run_ids(root: Path) -> list[str]:
    listed = loopengt(root, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    return [r["run_id"] for r in json.loads(listed.stdout)]


def test_runs_status_is_checked_and_takes_a_prefix(tmp_path: Path) -> None:
    bogus = loopengt(tmp_path, "runs", "--status", "bogus")
    assert bogus.returncode == 2
    assert "status 'bogus' is not a run status; use one of running, waiting_approval" in (
        bogus.stderr
    )
    assert "Traceback" not in bogus.stderr
    assert loopengt(tmp_path, "runs", "--status", "waiting").returncode == 0
    assert loopengt(tmp_path, "runs", "--status", "COMPLETED").returncode == 0


def test_a_mapped_input_that_is_not_a_list_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text((REPO / "examples" / "parallel-review.yaml").read_text())
    result = loopengt(tmp_path, "run", "p.yaml", "--model", "test", "-i", "files=x")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "input 'files' is mapped over, so it must be a list (got str)" in result.stderr
    assert "resume" not in result.stderr and run_ids(tmp_path) == []
    good = loopengt(tmp_path, "run", "p.yaml", "--model", "test", "-i", 'files=["a", "b"]')
    assert good.returncode == 0, good.stderr


def test_a_function_tool_that_does_not_import_is_exit_2_before_running(tmp_path: Path) -> None:
    write(
        tmp_path,
        "t.yaml",
        """\
        name: t
        goal: Use a tool.
        tools:
          - {name: calc, kind: function, function: "nosuch_module_xyz:calc"}
        agents: [{name: a, tools: [calc]}]
        steps: [{name: s, prompt: "Compute."}]
        policy: {max_turns: 4}
        """,
    )
    result = loopengt(tmp_path, "run", "t.yaml", "--model", "test")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: tool 'calc': cannot import 'nosuch_module_xyz:calc': "
        "No module named 'nosuch_module_xyz'"
    )
    assert run_ids(tmp_path) == []


def test_a_cassette_that_does_not_match_is_exit_2_without_a_resume_hint(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "c.yaml",
        """\
        name: c
        goal: Say things.
        agents: [{name: a}]
        steps: [{name: s, prompt: "Say hello."}]
        policy: {max_turns: 4}
        """,
    )
    recorded = loopengt(tmp_path, "run", "c.yaml", "--model", "test", "--record", "tape.yaml")
    assert recorded.returncode == 0, recorded.stderr
    spec.write_text(spec.read_text().replace("Say hello.", "Say bye."))
    replayed = loopengt(tmp_path, "run", "c.yaml", "--replay", "tape.yaml")
    assert replayed.returncode == 2, replayed.stdout + replayed.stderr
    assert "does not match the cassette" in replayed.stdout
    assert "resume" not in replayed.stderr


def test_the_comment_of_an_approval_stays_in_the_trace(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        """\
        name: notes
        goal: Publish notes.
        agents: [{name: a}]
        steps:
          - {name: draft, prompt: "Draft the notes."}
          - {name: publish, depends_on: [draft], prompt: "Publish them."}
        policy:
          max_turns: 6
          approvals: [{step: publish, message: "Publish?"}]
        """,
    )
    waiting = loopengt(tmp_path, "run", "a.yaml", "--model", "test", "--run-id", "notes-1")
    assert waiting.returncode == 0 and "waiting for approval" in waiting.stderr
    approved = loopengt(tmp_path, "approve", "notes-1", "--comment", "ship it on Monday")
    assert approved.returncode == 0, approved.stderr
    trace = json.loads(loopengt(tmp_path, "trace", "notes-1", "--format", "json").stdout)
    starts = [e for e in trace["events"] if e["kind"] == "run_start"]
    assert starts[-1]["answer"] == {"approved": True, "comment": "ship it on Monday"}
    tree = loopengt(tmp_path, "trace", "notes-1").stdout
    assert "resumed (session 2)" in tree and "approved ('ship it on" in tree  # may wrap
    markdown = loopengt(tmp_path, "trace", "notes-1", "--format", "markdown").stdout
    assert "approved ('ship it on Monday')" in markdown


def test_the_index_shows_what_a_killed_run_checkpointed(tmp_path: Path) -> None:
    lines = [
        f"  - {{name: s{i}{f', depends_on: [s{i - 1}]' if i > 1 else ''}, prompt: Step {i}.}}"
        for i in range(1, 5)
    ]
    header = "name: k\ngoal: Four slow steps.\nagents: [{name: a}]\npolicy: {max_turns: 10}\n"
    (tmp_path / "k.yaml").write_text(header + "steps:\n" + "\n".join(lines) + "\n")
    env = {**os.environ, "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "loopengt", "run", "k.yaml", "--run-id", "k-1"]
    process = subprocess.Popen(
        [*argv, "--model", "test:delay=1.5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    events = tmp_path / ".loopengt" / "runs" / "k-1.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = events.read_text() if events.exists() else ""
            starts = [json.loads(x) for x in text.splitlines() if '"step_start"' in x]
            if len(starts) >= 3:  # s3 started: s1 and s2 are checkpointed (durability sync)
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run did not reach its third step")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    record = next(r for r in json.loads(loopengt(tmp_path, "runs", "--json").stdout))
    assert record["status"] == "interrupted"
    assert record["steps_done"] == 2 and record["tokens"] > 0
    assert "steps: 2" in loopengt(tmp_path, "runs", "show", "k-1").stdout


def test_commands_find_the_project_from_a_subfolder_or_with_project(tmp_path: Path) -> None:
    write(
        tmp_path,
        "c.yaml",
        """\
        name: c
        goal: Say things.
        agents: [{name: a}]
        steps: [{name: s, prompt: "Say hello."}]
        policy: {max_turns: 4}
        """,
    )
    assert loopengt(tmp_path, "run", "c.yaml", "--model", "test", "--run-id", "c-1").returncode == 0
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    assert run_ids(deep) == ["c-1"]
    assert "c-1" in loopengt(deep, "trace", "c-1").stdout
    assert not (deep / ".loopengt").exists() and not (tmp_path / "src" / ".loopengt").exists()
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    listed = loopengt(elsewhere, "--project", str(tmp_path), "runs", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["c-1"]
    missing = loopengt(elsewhere, "--project", str(tmp_path / "nope"), "runs")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_init_gives_a_loop_to_run_and_says_what_next(tmp_path: Path) -> None:
    first = loopengt(tmp_path, "init")
    assert first.returncode == 0 and "created loop.yaml" in first.stdout
    assert 'loopengt run loop.yaml -i draft="' in first.stdout
    assert loopengt(tmp_path, "validate", "loop.yaml").returncode == 0
    run = loopengt(tmp_path, "run", "loop.yaml", "--model", "test", "-i", "draft=Ship it.")
    assert run.returncode == 0, run.stderr
    (tmp_path / "loop.yaml").write_text("# mine\n")
    again = loopengt(tmp_path, "init")
    assert "exists  loop.yaml" in again.stdout
    assert (tmp_path / "loop.yaml").read_text() == "# mine\n"  # never overwritten


@pytest.mark.parametrize("command", ["validate", "run", "trace", "init", "eval", "doctor"])
def test_help_has_no_type_placeholders(tmp_path: Path, command: str) -> None:
    shown = loopengt(tmp_path, command, "--help")
    assert shown.returncode == 0
    assert "<bool>" not in shown.stdout and "{" not in shown.stdout.splitlines()[1]
    assert "<list[str]>" not in shown.stdout and "<str>" not in shown.stdout


def test_a_usage_error_names_the_subcommands_help(tmp_path: Path) -> None:
    result = loopengt(tmp_path, "runs", "show")
    assert result.returncode == 2
    assert "Try 'loopengt runs show --help'." in result.stderr


def test_the_live_display_moves_between_events_and_shows_retries() -> None:
    from rich.console import Console

    from loopengt.cli.output import err_console
    from loopengt.cli.progress import RunProgress
    from loopengt.tracing.events import EventKind
    from loopengt.tracing.stream import RunEvent

    progress = RunProgress()
    progress(RunEvent(EventKind.STEP_START, "r", time.time(), step="s", agent="a"))
    render = Console(width=80, record=True)
    render.print(progress)
    time.sleep(0.25)
    render.print(progress)  # no event in between: only the clock moved
    first, second = render.export_text().splitlines()[:2]
    assert first != second and "s (a)" in second
    with err_console.capture() as captured:
        progress(
            RunEvent(
                EventKind.RETRY,
                "r",
                time.time(),
                step="s",
                data={"cause": "error", "attempt": 2, "reason": "HTTP 503 from the server"},
            )
        )
    assert "↻ s (a)  attempt 2 (error: HTTP 503 from the server)" in captured.get()


def test_read_commands_never_create_a_database(tmp_path: Path) -> None:
    assert "no runs yet" in loopengt(tmp_path, "runs").stdout
    assert loopengt(tmp_path, "runs", "--checkpointer", "other.db").returncode == 0
    shown = loopengt(tmp_path, "runs", "show", "nope")
    assert shown.returncode == 2
    assert (
        shown.stderr.strip()
        == "error: no run 'nope' in .loopengt/loopengt.db (see `loopengt runs`)"
    )
    assert loopengt(tmp_path, "resume", "nope").returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
