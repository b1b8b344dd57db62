"""`loopengt init --ide NAME`: the files each IDE reads to start `loopengt mcp serve` and to
offer the loop commands, one adapter per IDE.

An adapter plans `Change`s (see `files`), so every file is checked before any is written: one
that does not parse refuses the whole install and nothing is touched. The formats are those
of late 2026 (../shared/FACTS.md); they move, which is why adapters are also plugins
(`loopengt.adapters`): an installed plugin adapter with a built-in's name replaces it.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopengt.errors import UserInputError
from loopengt.ide.files import Change, json_entry, markdown_section, owned, toml_entry
from loopengt.ide.skills import Skill, all_skills, frontmatter

SERVER = "loopengt"
"""The name the MCP server gets in every IDE's config."""


@dataclass(frozen=True)
class Target:
    """Where and how an adapter installs: what every plan reads."""

    root: Path
    """The project folder (the IDE's workspace)."""
    home: Path
    """The user's home, for `--global` and for IDEs that only have a user config."""
    global_: bool
    """Install for the user (every project) rather than this project."""
    command: str
    """The executable that starts loopengt, as the IDE will run it."""
    args: tuple[str, ...]
    """Its arguments, ending in `mcp serve` (`stdio` adds `--root` for a project)."""
    skills: tuple[Skill, ...]

    @property
    def base(self) -> Path:
        return self.home if self.global_ else self.root

    def stdio(self, **extra: Any) -> dict[str, Any]:
        """The server entry most IDEs share: `command` and `args`, plus ``extra``. A project
        install names the project with `--root`, since IDEs differ in the folder they start
        a server in; a `--global` (user-level) entry serves whatever folder the IDE starts
        it in."""
        args = list(self.args)
        if not self.global_:
            args += ["--root", str(self.root)]
        return {**extra, "command": self.command, "args": args}


@dataclass(frozen=True)
class Adapter:
    """One IDE: which files it reads and what the user does next."""

    name: str
    title: str
    server_config: Callable[[Target], tuple[Path, tuple[str, ...]]]
    """The file that registers MCP servers and the keys of loopengt's entry in it (also
    read by `loopengt doctor`)."""
    plan: Callable[[Target], list[Change]]
    next_steps: Callable[[Target], str]


@dataclass
class Installed:
    """What `install` did for one adapter."""

    adapter: Adapter
    changes: list[Change] = field(default_factory=list)
    next_steps: str = ""


def server_command() -> tuple[str, tuple[str, ...]]:
    """How an IDE should start this loopengt: plain `loopengt` when the one on PATH is this
    installation, else the absolute path of its script (an IDE does not activate a venv),
    else this interpreter with `-m loopengt`."""
    script = Path(sys.executable).parent / "loopengt"
    on_path = shutil.which("loopengt")
    if on_path and (not script.exists() or Path(on_path).resolve() == script.resolve()):
        return "loopengt", ("mcp", "serve")
    if script.exists():
        return str(script), ("mcp", "serve")
    return sys.executable, ("-m", "loopengt", "mcp", "serve")


def _skill_md(skill: Skill, *, hint: bool = True) -> str:
    fields: dict[str, str | bool] = {"name": skill.name, "description": skill.description}
    if hint and skill.argument_hint:
        fields["argument-hint"] = skill.argument_hint
    return frontmatter(**fields) + skill.body


def _skill_files(folder: Path, target: Target, *, hint: bool = True) -> list[Change]:
    return [
        owned(folder / skill.name / "SKILL.md", _skill_md(skill, hint=hint))
        for skill in target.skills
    ]


def _command_md(skill: Skill) -> str:
    return f"# {skill.description}\n\n{skill.body}"


def _listing(target: Target) -> str:
    return "\n".join(f"- `{skill.name}`: {skill.description}" for skill in target.skills)


INSTRUCTIONS = """\
## loopengt

This project describes agent loops as loopengt LoopSpecs (YAML). The `loopengt` MCP server
(`loopengt mcp serve`) has the tools: `design_loop`, `validate_loop`, `run_loop` (returns a
run id at once; poll `get_run`), `get_trace`, `eval_run`, `list_runs`, `list_templates`,
`approve_run`, `resume_run`. After editing a spec, validate it before running it.

Loop commands:
{skills}
"""


# -- Cursor -----------------------------------------------------------------------------------


def _cursor_config(t: Target) -> tuple[Path, tuple[str, ...]]:
    return t.base / ".cursor" / "mcp.json", ("mcpServers", SERVER)


def _cursor(t: Target) -> list[Change]:
    changes = [json_entry(*_cursor_config(t), t.stdio())]
    if not t.global_:  # rules are per project
        rule = frontmatter(
            description="Working with loopengt loop specs (agent loops in YAML)",
            globs="**/*.yaml,**/*.yml",
            alwaysApply=False,
        ) + INSTRUCTIONS.format(skills=_listing(t))
        changes.append(owned(t.root / ".cursor" / "rules" / "loopengt.mdc", rule))
    commands = t.base / ".cursor" / "commands"
    changes += [owned(commands / f"{s.name}.md", _command_md(s)) for s in t.skills]
    return changes


CURSOR = Adapter(
    "cursor",
    "Cursor",
    _cursor_config,
    _cursor,
    lambda t: (
        "Open Cursor Settings > MCP and enable 'loopengt'; type / in the chat for "
        "the loopengt-* commands."
    ),
)


# -- Claude Code ------------------------------------------------------------------------------


def _claude_code_config(t: Target) -> tuple[Path, tuple[str, ...]]:
    return t.home / ".claude.json" if t.global_ else t.root / ".mcp.json", ("mcpServers", SERVER)


def _claude_code(t: Target) -> list[Change]:
    return [
        json_entry(*_claude_code_config(t), t.stdio(type="stdio")),
        *_skill_files(t.base / ".claude" / "skills", t),
    ]


CLAUDE_CODE = Adapter(
    "claude-code",
    "Claude Code",
    _claude_code_config,
    _claude_code,
    lambda t: (
        "Start `claude` here and approve the project's 'loopengt' server when asked "
        "(`/mcp` shows it); the skills answer /loopengt-design, /loopengt-run, ..."
    ),
)


# -- Codex ------------------------------------------------------------------------------------


def _codex_config(t: Target) -> tuple[Path, tuple[str, ...]]:
    return t.base / ".codex" / "config.toml", ("mcp_servers", SERVER)


def _codex(t: Target) -> list[Change]:
    server = {**t.stdio(), "startup_timeout_sec": 30, "tool_timeout_sec": 600}
    changes = [toml_entry(*_codex_config(t), server)]
    if not t.global_:
        changes.append(
            markdown_section(t.root / "AGENTS.md", INSTRUCTIONS.format(skills=_listing(t)))
        )
    changes += _skill_files(t.base / ".agents" / "skills", t, hint=False)
    return changes


def _codex_next(t: Target) -> str:
    where = "~/.codex/config.toml" if t.global_ else ".codex/config.toml"
    trust = (
        ""
        if t.global_
        else " Codex reads a project's .codex/config.toml only when you trust the project "
        "(or use --global)."
    )
    return f"Run `codex` here; `/mcp` lists 'loopengt' from {where}.{trust}"


CODEX = Adapter("codex", "Codex", _codex_config, _codex, _codex_next)


# -- Antigravity ------------------------------------------------------------------------------


def _antigravity_config(t: Target) -> tuple[Path, tuple[str, ...]]:
    # the workspace's .agents/mcp_config.json (Antigravity 2.0); the IDE's user file with
    # --global (`agy`, the CLI, reads ~/.gemini/config/mcp_config.json instead)
    user = t.home / ".gemini" / "antigravity" / "mcp_config.json"
    return (user if t.global_ else t.root / ".agents" / "mcp_config.json"), ("mcpServers", SERVER)


def _antigravity(t: Target) -> list[Change]:
    workflows = (
        t.home / ".gemini" / "antigravity" / "global_workflows"
        if t.global_
        else t.root / ".agents" / "workflows"
    )
    return [
        json_entry(*_antigravity_config(t), t.stdio()),
        *(
            owned(workflows / f"{s.name}.md", frontmatter(description=s.description) + s.body)
            for s in t.skills
        ),
    ]


ANTIGRAVITY = Adapter(
    "antigravity",
    "Antigravity",
    _antigravity_config,
    _antigravity,
    lambda t: (
        "In Antigravity open Agent > MCP Servers > Manage and refresh; type / in the "
        "agent for the loopengt-* workflows (the agy CLI reads ~/.gemini/config/mcp_config.json)."
    ),
)


# -- VS Code ----------------------------------------------------------------------------------


def _vscode_user(home: Path) -> Path:
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "Code" / "User"
    return home / ".config" / "Code" / "User"


def _vscode_config(t: Target) -> tuple[Path, tuple[str, ...]]:
    folder = _vscode_user(t.home) if t.global_ else t.root / ".vscode"
    return folder / "mcp.json", ("servers", SERVER)


def _vscode(t: Target) -> list[Change]:
    changes = [json_entry(*_vscode_config(t), t.stdio(type="stdio"))]
    prompts = _vscode_user(t.home) / "prompts" if t.global_ else t.root / ".github" / "prompts"
    for s in t.skills:
        text = frontmatter(description=s.description, agent="agent") + s.body
        changes.append(owned(prompts / f"{s.name}.prompt.md", text))
    return changes


VSCODE = Adapter(
    "vscode",
    "VS Code",
    _vscode_config,
    _vscode,
    lambda t: (
        "In VS Code run 'MCP: List Servers' and start 'loopengt'; in Copilot Chat (agent "
        "mode) type /loopengt-design, /loopengt-run, ..."
    ),
)


BUILTIN_ADAPTERS = (CURSOR, CLAUDE_CODE, CODEX, ANTIGRAVITY, VSCODE)


def adapters() -> dict[str, Adapter]:
    """Every adapter by name: the built-in ones, replaced or joined by plugin adapters."""
    from loopengt import plugins

    found = {adapter.name: adapter for adapter in BUILTIN_ADAPTERS}
    for entry in plugins.usable("adapters"):
        if isinstance(entry.value, Adapter):
            found[entry.value.name] = entry.value
    return found


def make_target(
    root: Path | str = ".",
    *,
    global_: bool = False,
    home: Path | None = None,
    command: tuple[str, tuple[str, ...]] | None = None,
) -> Target:
    """A `Target` for the project at ``root`` (``command`` defaults to `server_command`)."""
    exe, args = command or server_command()
    return Target(Path(root).resolve(), home or Path.home(), global_, exe, args, all_skills())


def install(
    names: list[str],
    root: Path | str = ".",
    *,
    global_: bool = False,
    home: Path | None = None,
    command: tuple[str, tuple[str, ...]] | None = None,
) -> list[Installed]:
    """Write the files of each IDE in ``names``; all or nothing: if any file is refused
    (it does not parse, or cannot be read), nothing is written and a `UserInputError`
    lists each refused file and why."""
    known = adapters()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserInputError(f"unknown IDE {unknown[0]!r}; use one of {', '.join(sorted(known))}")
    target = make_target(root, global_=global_, home=home, command=command)
    done = [
        Installed(known[name], known[name].plan(target), known[name].next_steps(target))
        for name in dict.fromkeys(names)
    ]
    refused = [c for item in done for c in item.changes if c.action == "refused"]
    if refused:
        raise UserInputError(
            "\n".join(
                f"{c.path}: {c.reason}; left untouched (fix or move it, then run again)"
                for c in refused
            )
        )
    for item in done:
        for change in item.changes:
            change.apply()
    return done
