"""Issue 12, Done-when: llama-cpp-python's own OpenAI-compatible server (`python -m
llama_cpp.server`, serving the embedded SmolLM2 GGUF on 127.0.0.1) runs every example spec
through `openai:`: none ends `failed` (completed, or stopped by a policy limit with its
reason), each within its time limit.

A server nobody here wrote: it refuses `response_format: json_schema` (structured output
falls back to `json_object`), and ignores `max_completion_tokens` (we send `max_tokens` too).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runs.helpers import cli_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
INPUTS = {
    "custom-draft-check": ["changes=Added dark mode and fixed a login bug"],
    "parallel-review": ['files=["def add(a, b): return a + b", "def div(a, b): return a / b"]'],
    "research-brief": ["topic=tide pools"],
    "review-loop": ["subject=owls"],
    "supervisor-team": ["question=Why is the sky blue?"],
    "support-handoff": ["request=I was charged twice for my order"],
    "seed-0.1.0": [],
}
DEFAULT_LIMIT_S = 300  # for an example whose policy sets no total time

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    from loopengt.providers.local import physical_cores, shipped_gguf

    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", shipped_gguf()),
                *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"),
                *("--n_threads", str(physical_cores())),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    failed = f"llama.cpp server did not start:\n{log.read_text()}"
                    raise AssertionError(failed) from None
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def total_time_limit(example: Path) -> float:
    from loopengt.spec import load_spec

    limit = load_spec(example).policy.max_total_time_seconds
    return limit if limit is not None else DEFAULT_LIMIT_S


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_every_example_runs_on_llama_cpps_own_server(
    name: str, llama_server: str, tmp_path: Path
) -> None:
    (tmp_path / ".loopengt").mkdir()
    config = f'[llm]\nmodel = "openai:smollm2"\nbase_url = "{llama_server}"\n'
    (tmp_path / ".loopengt" / "config.toml").write_text(config)
    example = EXAMPLES / f"{name}.yaml"
    inputs = [arg for value in INPUTS[name] for arg in ("-i", value)]
    limit = total_time_limit(example)
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "loopengt", "run", str(example), *inputs, "--json"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=limit + 120,
    )
    took = time.monotonic() - began
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{name}: {result['status']} in {took:.1f}s; {result.get('stop_reason')}")
    assert result["status"] in ("completed", "stopped"), result.get("stop_reason")
    if result["status"] == "stopped":  # by a limit of the policy, which it names
        assert proc.returncode == 1
        assert str(result["stop_reason"]).split(":")[0] in (
            "max_turns", "max_total_time", "budget", "supervisor",
        ), result["stop_reason"]  # fmt: skip
    else:
        assert proc.returncode == 0, proc.stderr
    assert took < limit + 30  # the process's start-up on top of the policy's limit
