"""Shared helpers for the run-engine tests: a project directory whose config points the real
ChatOpenAI at a scripted server, and `loopengt` run as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 60  # seconds; a hung CLI fails its test instead of the whole session

# variables that would point the CLI at a real provider or tracing service
_SCRUBBED = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LOOPENGT_MODEL",
    "LOOPENGT_DEBUG",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
)


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def make_project(root: Path, base_url: str) -> Path:
    """A working directory whose `[llm]` model goes to ``base_url`` through ChatOpenAI."""
    state = root / ".loopengt"
    state.mkdir(parents=True, exist_ok=True)
    config = f'[llm]\nmodel = "openai:test-model"\nbase_url = "{base_url}"\n'
    (state / "config.toml").write_text(config, encoding="utf-8")
    return root


def write_spec(root: Path, name: str, yaml_text: str) -> str:
    (root / name).write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    return name


def loopengt(
    cwd: Path, *args: str, timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_loopengt(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopengt", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_works,
    )


def _ctrl_c_works() -> None:
    """In the child: SIGINT as in a terminal. Tests send it as Ctrl-C, but a test session
    started in the background by a non-interactive shell (a CI script's `&`) ignores SIGINT,
    and a child would inherit that and never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen[str], timeout: float = CLI_TIMEOUT) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"loopengt did not finish in {timeout}s:\n{out}\n{err}") from None


def error_lines(stderr: str) -> list[str]:
    """The `error: ...` lines of a CLI's stderr (progress lines are left out)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def result_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The `--json` result: the last stdout line (progress goes to stderr)."""
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no stdout; stderr:\n{proc.stderr}"
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def stored_run(cwd: Path, run_id: str) -> tuple[Any, dict[str, Any]]:
    """(index record, latest state) through the Python API: no CLI start-up per check."""
    from loopengt.runs.engine import get_run

    return get_run(run_id, root=cwd)


def show(cwd: Path, run_id: str) -> dict[str, Any]:
    proc = loopengt(cwd, "runs", "show", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return result_json(proc)


def run_list(cwd: Path, *args: str) -> list[dict[str, Any]]:
    proc = loopengt(cwd, "runs", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    data: list[dict[str, Any]] = json.loads(proc.stdout)
    return data


def trace_events(cwd: Path, run_id: str) -> list[dict[str, Any]]:
    path = cwd / ".loopengt" / "runs" / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def server_process(script: dict[str, Any], workdir: Path) -> Iterator[tuple[str, Path]]:
    """The scripted server as its own process: yields (base URL, request count file)."""
    script_file, count_file = workdir / "script.json", workdir / "count.txt"
    script_file.write_text(json.dumps(script), encoding="utf-8")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.support.openai_server", "--port", "0"),
            *("--script", str(script_file), "--count-file", str(count_file)),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), f"server did not start: {url!r}"
        yield url, count_file
    finally:
        terminate(proc, timeout=10)


def terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_count(count_file: Path) -> int:
    try:
        return int(count_file.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0
