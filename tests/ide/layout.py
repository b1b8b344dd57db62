"""What each IDE adapter should write, written out independently of `loopengt.ide.adapters`,
and helpers to snapshot a folder tree and read YAML frontmatter."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

IDES = ("cursor", "claude-code", "codex", "antigravity", "vscode")
SKILLS = ("loopengt-design", "loopengt-validate", "loopengt-run", "loopengt-trace", "loopengt-eval")
EXE = "loopengt-under-test"
COMMAND = (EXE, ("mcp", "serve"))
"""A fixed `command` for `install`, so what is written does not depend on the machine."""

OTHER_SERVER = {"command": "other-server", "args": ["--flag", "x"], "env": {"LEVEL": "2"}}

CODEX_CONFIG = """\
# my codex settings: keep this comment
model = "o3"
approval_policy = "on-request"  # an inline comment

[mcp_servers.other]
command = "other-server"
args = ["--flag", "x"]
env = { LEVEL = "2" }

[profiles.fast]
model = "o4-mini"
"""


@dataclass(frozen=True)
class Layout:
    """The files one IDE install should write."""

    config: Path
    """The file that registers MCP servers."""
    keys: tuple[str, str]
    """The keys of loopengt's entry in it."""
    fmt: str
    """`json` or `toml`."""
    docs: dict[Path, frozenset[str] | None]
    """Every Markdown file written, with the keys its YAML frontmatter must have (None: a
    file without frontmatter)."""

    @property
    def files(self) -> set[Path]:
        return {self.config, *self.docs}


def vscode_user(home: Path) -> Path:
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "Code" / "User"
    return home / ".config" / "Code" / "User"


def layout(name: str, root: Path, home: Path, global_: bool = False) -> Layout:
    base = home if global_ else root
    skill = frozenset({"name", "description"})
    if name == "cursor":
        docs: dict[Path, frozenset[str] | None] = {
            base / ".cursor" / "commands" / f"{s}.md": None for s in SKILLS
        }
        if not global_:
            docs[root / ".cursor" / "rules" / "loopengt.mdc"] = frozenset(
                {"description", "globs", "alwaysApply"}
            )
        return Layout(base / ".cursor" / "mcp.json", ("mcpServers", "loopengt"), "json", docs)
    if name == "claude-code":
        config = home / ".claude.json" if global_ else root / ".mcp.json"
        docs = {
            base / ".claude" / "skills" / s / "SKILL.md": skill | {"argument-hint"} for s in SKILLS
        }
        return Layout(config, ("mcpServers", "loopengt"), "json", docs)
    if name == "codex":
        docs = {base / ".agents" / "skills" / s / "SKILL.md": skill for s in SKILLS}
        if not global_:
            docs[root / "AGENTS.md"] = None
        return Layout(base / ".codex" / "config.toml", ("mcp_servers", "loopengt"), "toml", docs)
    if name == "antigravity":
        gemini = home / ".gemini" / "antigravity"
        folder = gemini / "global_workflows" if global_ else root / ".agents" / "workflows"
        docs = {folder / f"{s}.md": frozenset({"description"}) for s in SKILLS}
        config = gemini / "mcp_config.json" if global_ else root / ".agents" / "mcp_config.json"
        return Layout(config, ("mcpServers", "loopengt"), "json", docs)
    if name == "vscode":
        folder = vscode_user(home) if global_ else root / ".vscode"
        prompts = vscode_user(home) / "prompts" if global_ else root / ".github" / "prompts"
        docs = {prompts / f"{s}.prompt.md": frozenset({"description"}) for s in SKILLS}
        return Layout(folder / "mcp.json", ("servers", "loopengt"), "json", docs)
    raise AssertionError(name)


def expected_entry(name: str, root: Path, global_: bool = False) -> dict[str, Any]:
    """loopengt's entry for ``COMMAND``, without Codex's timeouts (checked apart)."""
    args = ["mcp", "serve"]
    if not global_:
        args += ["--root", str(root)]
    entry: dict[str, Any] = {"command": EXE, "args": args}
    if name in ("claude-code", "vscode"):
        entry = {"type": "stdio", **entry}
    return entry


def seed_config(lay: Layout) -> dict[str, Any]:
    """Write a config holding another server and unrelated keys; returns its parsed form."""
    lay.config.parent.mkdir(parents=True, exist_ok=True)
    if lay.fmt == "toml":
        lay.config.write_text(CODEX_CONFIG, encoding="utf-8")
        return tomllib.loads(CODEX_CONFIG)
    data = {
        "theme": "dark",
        "inputs": [],
        lay.keys[0]: {"other": OTHER_SERVER},
        "projects": {"/somewhere": {"allowedTools": ["Bash"], "history": [1, 2]}},
    }
    lay.config.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
    return data


def parse_config(lay: Layout) -> dict[str, Any]:
    text = lay.config.read_text(encoding="utf-8")
    data: dict[str, Any] = tomllib.loads(text) if lay.fmt == "toml" else json.loads(text)
    return data


def corrupt_config(lay: Layout) -> bytes:
    """Write a config that does not parse; returns its bytes."""
    lay.config.parent.mkdir(parents=True, exist_ok=True)
    if lay.fmt == "toml":
        raw = b'model = "o3"\n[mcp_servers.other\ncommand = "x"\n'
    else:
        raw = b'{"' + lay.keys[0].encode() + b'": {"other": {"command": "x",}}\n'
    lay.config.write_bytes(raw)
    return raw


def tree(*roots: Path) -> dict[Path, tuple[bytes, int] | None]:
    """Every file (bytes and mtime) and folder (None) under ``roots``."""
    found: dict[Path, tuple[bytes, int] | None] = {}
    for top in roots:
        for folder, dirs, names in os.walk(top):
            for d in dirs:
                found[Path(folder) / d] = None
            for n in names:
                path = Path(folder) / n
                found[path] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def files_under(*roots: Path) -> set[Path]:
    return {path for path, value in tree(*roots).items() if value is not None}


def split_frontmatter(text: str) -> tuple[dict[str, Any], str]:
    """The YAML frontmatter (parsed with `yaml.safe_load`) and the body of a Markdown file."""
    assert text.startswith("---\n"), text[:80]
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, f"no closing --- in {text[:200]!r}"
    data = yaml.safe_load(head)
    assert isinstance(data, dict), head
    return data, body
