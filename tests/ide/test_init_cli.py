"""`loopengt init --ide NAME [--global]` as a user runs it: a real subprocess in a project
folder, with HOME pointing at a folder of the test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.ide.layout import IDES, files_under, layout, tree
from tests.runs.helpers import CLI_TIMEOUT, cli_env

LINE = re.compile(r"^\s+(created|updated|unchanged|refused)\s+(\S+)\s*$")


def init(root: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopengt", "init", *args],
        cwd=root,
        env={**cli_env(), "HOME": str(home), "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def reported(stdout: str) -> dict[str, str]:
    """The file lines of the IDE sections: shown path -> action."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


def shown(path: Path, root: Path, home: Path) -> str:
    """How the CLI names a file: relative to the project (its cwd), else `~/...`."""
    if path.is_relative_to(root):
        return str(path.relative_to(root))
    return "~/" + str(path.relative_to(home))


def test_init_cursor_and_codex_then_again_unchanged(root: Path, home: Path) -> None:
    first = init(root, home, "--ide", "cursor", "--ide", "codex")

    assert first.returncode == 0, first.stderr
    expected = layout("cursor", root, home).files | layout("codex", root, home).files
    assert reported(first.stdout) == {shown(p, root, home): "created" for p in expected}
    assert "Cursor" in first.stdout and "Codex" in first.stdout
    assert first.stdout.count("next:") == 2
    assert (root / ".loopengt" / "config.toml").is_file()  # init's own scaffolding as well
    assert files_under(home) == set()
    cursor = json.loads((root / ".cursor" / "mcp.json").read_text(encoding="utf-8"))
    codex = tomllib.loads((root / ".codex" / "config.toml").read_text(encoding="utf-8"))
    for entry in (cursor["mcpServers"]["loopengt"], codex["mcp_servers"]["loopengt"]):
        assert entry["args"][-4:] == ["mcp", "serve", "--root", str(root)], entry
    snapshot = tree(root, home)

    second = init(root, home, "--ide", "cursor", "--ide", "codex")

    assert second.returncode == 0, second.stderr
    assert reported(second.stdout) == {shown(p, root, home): "unchanged" for p in expected}
    assert second.stdout.count("next:") == 2
    assert tree(root, home) == snapshot


def test_corrupt_vscode_config_exits_2_and_touches_nothing(root: Path, home: Path) -> None:
    config = root / ".vscode" / "mcp.json"
    config.parent.mkdir()
    raw = b'{\n  "servers": {\n    "other": {"command": "x",}\n  }\n}\n'
    config.write_bytes(raw)
    before = tree(root, home)

    result = init(root, home, "--ide", "cursor", "--ide", "vscode")

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert str(config) in result.stderr
    assert "not valid JSON" in result.stderr
    assert result.stderr.startswith("error: ")
    assert config.read_bytes() == raw
    # all or nothing: neither Cursor's files nor .loopengt/ were written
    assert tree(root, home) == before


def test_unknown_ide_exits_2_and_lists_the_valid_ones(root: Path, home: Path) -> None:
    result = init(root, home, "--ide", "emacs")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "emacs" in result.stderr
    for ide in IDES:
        assert ide in result.stderr
    assert tree(root, home) == {}


def test_global_without_ide_exits_2(root: Path, home: Path) -> None:
    result = init(root, home, "--global")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--global" in result.stderr and "--ide" in result.stderr
    assert tree(root, home) == {}


def test_global_writes_the_ide_files_under_home(root: Path, home: Path) -> None:
    result = init(root, home, "--ide", "claude-code", "--ide", "antigravity", "--global")

    assert result.returncode == 0, result.stderr
    expected = (
        layout("claude-code", root, home, global_=True).files
        | layout("antigravity", root, home, global_=True).files
    )
    assert files_under(home) == expected
    assert reported(result.stdout) == {shown(p, root, home): "created" for p in expected}
    assert all(path.startswith("~/") for path in reported(result.stdout))
    assert files_under(root) == set()  # --global leaves the folder it runs in alone
    entry = json.loads((home / ".claude.json").read_text(encoding="utf-8"))["mcpServers"]
    assert "--root" not in entry["loopengt"]["args"]


def test_codex_inline_mcp_servers_table_is_a_clean_refusal_or_a_merge(
    root: Path, home: Path
) -> None:
    config = root / ".codex" / "config.toml"
    config.parent.mkdir()
    raw = b'mcp_servers = { other = { command = "other-server" } }\n'
    config.write_bytes(raw)

    result = init(root, home, "--ide", "codex")

    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        assert str(config) in result.stderr
        assert config.read_bytes() == raw
    else:
        assert result.returncode == 0, result.stderr
        data = tomllib.loads(config.read_text(encoding="utf-8"))
        assert set(data["mcp_servers"]) == {"other", "loopengt"}
