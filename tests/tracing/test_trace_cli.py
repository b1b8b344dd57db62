"""`loopengt trace RUN_ID [--format ...] [-o FILE]`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loopengt.cli import trace as trace_command
from loopengt.compile import compile_spec
from loopengt.tracing.exports import load_trace
from tests.compilers.helpers import fake, spec_of, with_usage
from tests.tracing.runner import record

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
    name: pair
    goal: Test.
    agents: [{name: w}]
    steps: [{name: a}, {name: b, depends_on: [a]}]
    policy: {max_turns: 4}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with one finished run, `r1`, in .loopengt/runs."""
    spec = spec_of(SPEC)
    model = fake(with_usage("alpha", 5, 1), with_usage("beta", 6, 2))
    record(compile_spec(spec, models=model), spec, tmp_path / ".loopengt" / "runs", run_id="r1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.callback()(lambda: None)  # a group, so the command is invoked by name as in loopengt
    trace_command.register(cli)
    return cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app(), ["trace", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_tree_is_the_default(project: Path) -> None:
    code, out = invoke("r1")
    assert code == 0
    assert out.startswith("run r1 · pair · completed · ")
    assert "1. a (w) · ok" in out and "2. b (w) · ok" in out
    assert '→ "alpha"' in out


@pytest.mark.parametrize("fmt", ["json", "markdown", "jsonl"])
def test_exports_to_stdout_and_to_a_file(project: Path, fmt: str) -> None:
    original = load_trace(project / ".loopengt" / "runs" / "r1.json")
    code, out = invoke("r1", "--format", fmt)
    assert code == 0
    suffix = {"json": ".json", "markdown": ".md", "jsonl": ".jsonl"}[fmt]
    target = project / f"export{suffix}"
    code, _ = invoke("r1", "-f", fmt, "-o", str(target))
    assert code == 0
    assert target.read_text() == out
    assert load_trace(target) == original


def test_tree_to_a_file_is_plain_text(project: Path) -> None:
    code, _ = invoke("r1", "-o", "tree.txt")
    assert code == 0
    text = (project / "tree.txt").read_text()
    assert text.startswith("run r1 · pair · completed")
    assert "\x1b[" not in text


def test_otel_prints_spans_when_no_endpoint_is_set(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    code, out = invoke("r1", "--format", "otel")
    assert code == 0
    names = [json.loads(chunk)["name"] for chunk in split_json_objects(out)]
    code, _ = invoke("r1", "--format", "otel", "-o", "spans.json")
    assert code == 0
    in_file = split_json_objects((project / "spans.json").read_text())
    assert sorted(json.loads(chunk)["name"] for chunk in in_file) == sorted(names)
    steps = ["invoke_agent w"] * 2
    assert sorted(names) == ["chat unknown", "chat unknown", *steps, "invoke_workflow pair"]


def split_json_objects(text: str) -> list[str]:
    decoder, objects, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        obj, end = decoder.raw_decode(text, index)
        objects.append(json.dumps(obj))
        index = end
    return objects


def test_a_running_or_killed_run_renders_from_its_jsonl(project: Path) -> None:
    runs = project / ".loopengt" / "runs"
    (runs / "r1.json").unlink()
    code, out = invoke("r1")
    assert code == 0
    assert "completed" in out  # the jsonl holds the run_end too

    lines = (runs / "r1.jsonl").read_text().splitlines()
    (runs / "r1.jsonl").write_text("\n".join(lines[:3]) + "\n")
    code, out = invoke("r1")
    assert code == 0
    assert "running" in out and "1. a (w)" in out


def run_main(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `loopengt` entry point (its error handling), with this command registered."""
    code = (
        "import sys\n"
        "from loopengt.cli import app, trace\n"
        "names = {getattr(c.callback, '__name__', '') for c in app.app.registered_commands}\n"
        "if 'trace' not in names:\n"
        "    trace.register(app.app)\n"
        "app.main(sys.argv[1:])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_unknown_run_is_a_one_line_error_with_exit_code_2(tmp_path: Path) -> None:
    result = run_main(tmp_path, "trace", "nope")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: no trace for run 'nope' in .loopengt/runs (see `loopengt runs`)"
    )
    assert result.stdout == ""

    bad = run_main(tmp_path, "trace", "nope", "--format", "yaml")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
