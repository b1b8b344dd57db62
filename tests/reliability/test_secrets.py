"""Issue 19, secrets: a key in the environment, a password in the model's base URL and a
token an MCP server gets through the spec's `env:` are all really used, and none of them
reaches a file loopengt writes (traces, trace exports, a cassette, the SQLite database's
bytes) or anything it prints. Through the real CLI: a run, two failing runs whose server
echoes the credentials it was sent, every trace format, a recorded cassette, an eval,
`runs`, a Studio export and `doctor`."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from loopengt.redaction import REDACTED, redact, secret_values
from tests.support.cli import run_cli
from tests.support.openai_server import (
    ErrorReply,
    JsonReply,
    Reply,
    ScriptedOpenAIServer,
    ToolCallReply,
    echo_responder,
    last_user_text,
)

KEY = "sk-test-SECRET-7d1c4e9a0b52f386"  # OPENAI_API_KEY
# a password in the base URL: not shaped like a key, in no variable named like one
URL_USER, URL_PASSWORD = "alice", "SECRET2-pw-5e8a1c"
BASIC = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()  # how it is sent
MCP_TOKEN = "mcp-SECRET3-0f4b7d2c9e"  # MCP_API_TOKEN, handed to the MCP server by `env:`
CREDENTIALS = (KEY, URL_PASSWORD, BASIC)  # what loopengt itself sends to the model server
SECRETS = (*CREDENTIALS, MCP_TOKEN)

MCP_SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"
FORMATS = ("tree", "json", "jsonl", "markdown", "html", "otel")
RUNS = ("ok", "bad", "bad-url")

OK_SPEC = """
    name: secrets-ok
    goal: Look a setting up with a tool, then summarise it.
    tools:
      - name: text
        kind: mcp
        command: {python}
        args: [{server}]
        env: {{API_TOKEN: "${{MCP_API_TOKEN}}"}}
    agents:
      - {{name: worker, instructions: You use tools., tools: [text]}}
      - {{name: writer, instructions: You write briefly.}}
    steps:
      - {{name: lookup, agent: worker, prompt: "look the token up"}}
      - {{name: summary, agent: writer, prompt: "summarise {{{{lookup}}}}", depends_on: [lookup]}}
    policy: {{max_turns: 10}}
"""

FAIL_SPEC = """
    name: secrets-fail
    goal: Call a model whose server fails and echoes the credentials it was sent.
    agents:
      - {name: worker, instructions: You answer.}
    steps:
      - {name: doomed, prompt: "FAIL now"}
    policy: {max_turns: 5, retry: {attempts: 1}}
"""


class Model:
    """The scripted model server. A prompt saying FAIL, or the model `broken`, gets a 500
    whose body echoes the Authorization header it was sent; a judge gets its JSON; an agent
    with tools first calls `getenv API_TOKEN`; anything else an echo."""

    def __init__(self) -> None:
        self.server = ScriptedOpenAIServer(responder=self.answer)

    def answer(self, request: dict[str, Any]) -> Reply:
        auth = self.server.headers[-1].get("authorization", "")  # one request at a time here
        if "FAIL" in last_user_text(request) or request.get("model") == "broken":
            return ErrorReply(500, f"upstream refused the credentials {auth!r}")
        if request.get("response_format"):
            return JsonReply({"reasoning": "It answers the goal.", "score": 0.8})
        messages = request.get("messages", [])
        if request.get("tools") and not any(m.get("role") == "tool" for m in messages):
            return ToolCallReply("getenv", {"name": "API_TOKEN"})
        return echo_responder(request)


@dataclass
class Session:
    """Everything the CLI did, for the tests to look through."""

    project: Path
    exports: Path
    printed: dict[str, str] = field(default_factory=dict)  # command -> stdout + stderr
    trace_codes: dict[tuple[str, str], int] = field(default_factory=dict)
    authorizations: set[str] = field(default_factory=set)
    tool_results: list[str] = field(default_factory=list)

    @property
    def cassette(self) -> Path:
        return self.exports / "ok-cassette.yaml"

    def files(self) -> dict[str, bytes]:
        """Every file loopengt wrote: the project's `.loopengt/` and the exports."""
        roots = (self.project / ".loopengt", self.exports)
        return {
            str(path.relative_to(self.project.parent)): path.read_bytes()
            for root in roots
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != "config.toml"  # the user's own file
        }


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    model = Model()
    root = tmp_path_factory.mktemp("secrets")
    done = Session(root / "project", root / "exports")
    project, exports = done.project, done.exports
    config = project / ".loopengt" / "config.toml"
    write(config, '[llm]\nmodel = "openai:test-model"\n')
    spec = OK_SPEC.format(python=json.dumps(sys.executable), server=json.dumps(str(MCP_SERVER)))
    write(project / "ok.yaml", spec)
    write(project / "fail.yaml", FAIL_SPEC)
    exports.mkdir()

    def cli(*args: str, code: int | None = 0) -> str:
        proc = run_cli(project, *args)
        output = done.printed[" ".join(args)] = proc.stdout + proc.stderr
        if code is not None:
            assert proc.returncode == code, f"loopengt {' '.join(args)}:\n{output}"
        else:
            key = (args[1], args[3])  # a format fails if printing or writing it fails
            done.trace_codes[key] = done.trace_codes.get(key, 0) or proc.returncode
        return output

    with model.server as server, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", KEY)
        env.setenv("MCP_API_TOKEN", MCP_TOKEN)
        env.setenv("OPENAI_BASE_URL", server.base_url)
        for name in (
            "LOOPENGT_DEBUG",
            "LANGSMITH_TRACING",
            "LANGCHAIN_TRACING_V2",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ):
            env.delenv(name, raising=False)

        # a run that works, recorded to a cassette: the MCP tool hands the model its token
        cli("run", "ok.yaml", "--run-id", "ok", "--record", str(done.cassette))
        # a run that fails: the server's error body echoes the key it was sent
        cli("run", "fail.yaml", "--run-id", "bad", code=1)
        # the same with a password in the base URL (the client sends it as Basic auth)
        with_password = server.base_url.replace("://", f"://{URL_USER}:{URL_PASSWORD}@")
        env.setenv("OPENAI_BASE_URL", with_password)
        cli("run", "fail.yaml", "--run-id", "bad-url", code=1)
        env.setenv("OPENAI_BASE_URL", server.base_url)

        for run_id in RUNS:
            for fmt in FORMATS:
                cli("trace", run_id, "--format", fmt, code=None)
                out = str(exports / f"{run_id}.{fmt}")
                cli("trace", run_id, "--format", fmt, "-o", out, code=None)
            cli("runs", "show", run_id, "--json")
        cli("runs")
        cli("runs", "--json")
        cli("eval", "ok", "--judge-model", "openai:test-model", "--json")
        cli("studio", "ok.yaml", "--out", str(exports / "studio"))
        # doctor: the default model answers, `broken` fails with the key in its error; then
        # the base URL with its password in config.toml (doctor names the URL it reached)
        cli("doctor", "-m", "openai:broken", code=1)
        original = config.read_text()
        config.write_text(original + f'base_url = "{with_password}"\n')
        cli("doctor", "--json")
        config.write_text(original)

        done.authorizations = {h.get("authorization", "") for h in server.headers}
        done.tool_results = [
            m["content"] for r in server.requests for m in r["messages"] if m["role"] == "tool"
        ]
    yield done


def leaks(blobs: dict[str, bytes], secrets: tuple[str, ...]) -> dict[str, list[str]]:
    found = {name: [s for s in secrets if s.encode() in blob] for name, blob in blobs.items()}
    return {name: secrets for name, secrets in found.items() if secrets}


def is_database(name: str) -> bool:
    return Path(name).name.startswith("loopengt.db")  # with its -wal and -shm files


def test_every_secret_was_in_play(session: Session) -> None:
    # the key went to the server as a bearer token, the URL's password as Basic auth
    assert f"Bearer {KEY}" in session.authorizations
    assert f"Basic {BASIC}" in session.authorizations
    # the MCP server got the token from the spec's env (`${MCP_API_TOKEN}` expanded): its
    # getenv tool gave it back, once, and the model was sent the placeholder in its place
    # (only an environment secret is replaced in a tool's result: the result was the token)
    assert session.tool_results == [REDACTED]
    # and where each would have shown, a placeholder shows instead
    printed = session.printed
    assert f"credentials 'Bearer {REDACTED}'" in printed["run fail.yaml --run-id bad"]
    assert f"{URL_USER}:{REDACTED}@127.0.0.1" in printed["run fail.yaml --run-id bad-url"]
    assert f"{URL_USER}:{REDACTED}@127.0.0.1" in printed["doctor --json"]
    events = json.loads((session.exports / "ok.json").read_text())["events"]
    results = [e["result"] for e in events if e["kind"] == "tool_call"]
    assert results and all(REDACTED in result for result in results)
    assert REDACTED in session.cassette.read_text()


def test_the_commands_worked(session: Session) -> None:
    printed = session.printed
    assert "run ok  completed" in printed[f"run ok.yaml --run-id ok --record {session.cassette}"]
    assert "server error 500" in printed["run fail.yaml --run-id bad"]
    assert '"score": 0.8' in printed["eval ok --judge-model openai:test-model --json"]
    statuses = {r["run_id"]: r["status"] for r in json.loads(printed["runs --json"])}
    assert statuses == {"ok": "completed", "bad": "failed", "bad-url": "failed"}
    assert session.cassette.stat().st_size > 0
    written = session.files()
    for (run_id, fmt), code in session.trace_codes.items():
        if code == 0:
            assert written[f"exports/{run_id}.{fmt}"], (run_id, fmt)


@pytest.mark.parametrize(
    ("run_id", "fmt"),
    [pytest.param(run_id, fmt) for run_id in RUNS for fmt in FORMATS],
)
def test_every_trace_format_exports_every_run(session: Session, run_id: str, fmt: str) -> None:
    printed = session.printed[f"trace {run_id} --format {fmt}"]
    assert session.trace_codes[run_id, fmt] == 0, printed


def test_no_file_outside_the_database_holds_a_secret(session: Session) -> None:
    files = {name: blob for name, blob in session.files().items() if not is_database(name)}
    assert len(files) >= 2 * len(RUNS) + 1 + 2 * len(FORMATS)  # the traces, a cassette, ...
    assert leaks(files, SECRETS) == {}


def test_the_database_holds_no_credential(session: Session) -> None:
    database = {name: blob for name, blob in session.files().items() if is_database(name)}
    assert "project/.loopengt/loopengt.db" in database
    assert b"secrets-fail" in b"".join(database.values())  # the runs are in it
    assert leaks(database, CREDENTIALS) == {}


def test_the_database_holds_no_secret_a_tool_returned(session: Session) -> None:
    database = {name: blob for name, blob in session.files().items() if is_database(name)}
    assert leaks(database, (MCP_TOKEN,)) == {}


def test_nothing_printed_holds_a_secret(session: Session) -> None:
    assert len(session.printed) > 2 * len(RUNS) * len(FORMATS)
    assert {cmd: s for cmd, out in session.printed.items() for s in SECRETS if s in out} == {}


# -- the patterns redact() knows without being told the secret ---------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "at http://bob:hunter2-x@10.0.0.1:8080/v1 now",
            f"at http://bob:{REDACTED}@10.0.0.1:8080/v1 now",
        ),
        ("postgresql://app:p%40ss@db/loop", f"postgresql://app:{REDACTED}@db/loop"),
        ("GET /v1/models?api_key=abc123&limit=5", f"GET /v1/models?api_key={REDACTED}&limit=5"),
        (
            "https://h/x?sig=zz9&X-Amz-Signature=f00d",
            f"https://h/x?sig={REDACTED}&X-Amz-Signature={REDACTED}",
        ),
        ("Authorization: Basic YWxpY2U6c2VjcmV0", f"Authorization: Basic {REDACTED}"),
        # what is not a credential stays
        ("Basic Instructions for http://host:8080/path?monkey=1&page=2", None),
        ("mail alice@example.com or see https://example.com/a@b", None),
        ("a=1 & b=2; key=value", None),
    ],
)
def test_redact_knows_credentials_by_their_shape(text: str, expected: str | None) -> None:
    assert redact(text, known=[]) == (text if expected is None else expected)


def test_a_password_in_a_url_variable_is_a_secret_wherever_it_shows() -> None:
    env = {"OPENAI_BASE_URL": "http://u:pw-Secret-1%2F2@h/v1?token=tok-abcdef", "HOME": "/h"}
    assert set(secret_values(env)) == {"pw-Secret-1%2F2", "pw-Secret-1/2", "tok-abcdef"}
    assert redact("rejected pw-Secret-1/2", known=secret_values(env)) == f"rejected {REDACTED}"
