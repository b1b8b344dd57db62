"""`loopengt doctor` through the real parts: an OpenAI-compatible server that answers, one that
is down or too slow, a database folder the user cannot write, `--json` and `--offline`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopengt.doctor import Check, diagnose, failed
from tests.support.openai_server import Delayed, ErrorReply, ScriptedOpenAIServer

SECRET = "sk-doctor0123456789abcdefSECRET"


def _project(root: Path, base_url: str | None, model: str = "openai:doc-model") -> Path:
    (root / ".loopengt").mkdir(parents=True, exist_ok=True)
    llm = f'model = "{model}"\n' + (f'base_url = "{base_url}"\n' if base_url else "")
    (root / ".loopengt" / "config.toml").write_text(f"[llm]\n{llm}", encoding="utf-8")
    return root


def _doctor(cwd: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(cwd / "home"), "LOOPENGT_MODEL": ""}
    prefix = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] if user else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "loopengt", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def _check(checks: list[Check] | list[dict[str, Any]], name: str) -> Any:
    found = [c for c in checks if (c["name"] if isinstance(c, dict) else c.name) == name]
    assert len(found) == 1, [c["name"] if isinstance(c, dict) else c.name for c in checks]
    return found[0]


def test_reachable_model_is_one_one_token_call(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(["OK"]) as server:
        root = _project(tmp_path, server.base_url)
        checks = diagnose(root)
        assert server.request_count == 1
        request, url = server.requests[0], server.base_url
    model = _check(checks, "model openai:doc-model")
    assert (model.status, model.detail) == ("ok", f"answered at {url}")
    assert request["max_tokens"] == 1 and request["model"] == "doc-model"
    assert _check(checks, "config").status == "ok"
    database = _check(checks, "database")
    assert database.status == "ok" and "will be created" in database.detail
    assert not (root / ".loopengt" / "loopengt.db").exists()  # the doctor creates nothing


def test_unreachable_model_fails_with_a_hint_and_exit_1(tmp_path: Path) -> None:
    with ScriptedOpenAIServer([]) as server:
        url = server.base_url  # stopped on leaving: nothing listens there any more
    root = _project(tmp_path, url)
    result = _doctor(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line = next(line for line in result.stdout.splitlines() if "openai:doc-model" in line)
    assert line.lstrip().startswith("✗")
    assert "→ check [llm] base_url" in result.stdout
    offline = _doctor(root, "--offline")
    assert offline.returncode == 0, offline.stdout
    assert "not called (--offline)" in offline.stdout


def test_a_slow_model_is_cut_at_the_timeout(tmp_path: Path) -> None:
    with ScriptedOpenAIServer([Delayed("late", 30)]) as server:
        checks = diagnose(_project(tmp_path, server.base_url), timeout=0.5)
        assert server.request_count == 1  # tried once: the doctor sets max_retries=0
    model = _check(checks, "model openai:doc-model")
    assert (model.status, model.detail) == ("fail", "no answer within 0.5 s")
    assert failed(checks)


def test_no_secret_is_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOC_KEY", SECRET)
    with ScriptedOpenAIServer([ErrorReply(401, f"Incorrect API key {SECRET}")]) as server:
        root = _project(tmp_path, server.base_url)
        config = root / ".loopengt" / "config.toml"
        config.write_text(config.read_text() + 'api_key_env = "DOC_KEY"\n')
        result = _doctor(root, "--json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert _check(payload["checks"], "model openai:doc-model")["status"] == "fail"
    assert SECRET not in result.stdout + result.stderr


def test_json_lists_every_check_with_status_and_hint(tmp_path: Path) -> None:
    root = _project(tmp_path, None, model="test")
    result = _doctor(root, "--json", "--offline")
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    names = [c["name"] for c in payload["checks"]]
    for name in ("Python", "loopengt", "langgraph", "config", "model test", "database"):
        assert name in names
    assert "IDE adapters" in names and any(n.startswith("IDE cursor") for n in names)
    for check in payload["checks"]:
        assert set(check) == {"name", "status", "detail", "hint", "required"}
        assert check["status"] in {"ok", "fail", "skip"}


def test_invalid_config_is_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / ".loopengt").mkdir()
    (tmp_path / ".loopengt" / "config.toml").write_text("[llm\nmodel = 1\n")
    result = _doctor(tmp_path, "--offline")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "invalid TOML" in result.stdout and "→ fix the file" in result.stdout


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="loopengt-doctor-"))
    path.chmod(0o755)
    yield path
    for folder in [path, *path.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    shutil.rmtree(path)


def test_read_only_database_folder(shared_dir: Path) -> None:
    root = _project(shared_dir, None, model="test")
    state = root / ".loopengt"
    from loopengt.runs.storage import open_storage

    with open_storage(root=root):  # a real database, created while writable
        pass
    for path in [state, *state.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    # root writes anywhere: drop to an ordinary user for whom the folder is read-only
    user = "nobody" if os.geteuid() == 0 else None
    if user and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop privileges")
    result = _doctor(root, "--json", "--offline", user=user)
    payload = json.loads(result.stdout)
    database = _check(payload["checks"], "database")
    assert database["status"] == "fail", database
    assert "loopengt.db" in database["detail"] and "writable" in database["hint"]
    assert result.returncode == 1 and payload["ok"] is False
