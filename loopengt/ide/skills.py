"""The loop commands an IDE agent gets: design, validate, run, trace and eval, each as a
skill that every adapter renders in its IDE's format (a Claude Code or Codex skill, a Cursor
command, an Antigravity workflow). Plugins add skills through `loopengt.skills`.

Each skill tells the agent to use the loopengt MCP server's tool first and names the CLI
command as the fallback, so it works whether or not the IDE started the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from loopengt.errors import UserInputError

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class Skill:
    """One command an IDE agent can be asked for (`/loopengt-run loop.yaml`)."""

    name: str
    """Lowercase letters, digits and hyphens: it names a file or folder in every IDE."""
    description: str
    """One line: what the skill does and when to use it (IDEs choose skills by it)."""
    body: str
    """The instructions, in Markdown; `$ARGUMENTS` stands for what the user typed after it."""
    argument_hint: str = ""
    """What goes after the command, e.g. `<goal>`."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise UserInputError(f"skill name {self.name!r}: use lowercase letters, digits, '-'")


def frontmatter(**fields: str | bool) -> str:
    """A YAML frontmatter block; strings are JSON-quoted (valid YAML, any punctuation)."""
    import json

    lines = [
        f"{key}: {json.dumps(value) if isinstance(value, str) else str(value).lower()}"
        for key, value in fields.items()
    ]
    return "---\n" + "\n".join(lines) + "\n---\n\n"


BUILTIN_SKILLS = (
    Skill(
        "loopengt-design",
        "Design an agent loop (a loopengt LoopSpec) for a goal and write loop.yaml.",
        """\
Design an agent loop for this goal: $ARGUMENTS

1. Call the `design_loop` tool of the `loopengt` MCP server with the goal. It returns
   `spec_yaml` (a validated LoopSpec) and `design_doc`; if `fallback` is set, the closest
   template was used instead: say so.
2. Write `spec_yaml` to `loop.yaml` (ask before overwriting) and `design_doc` to
   `LOOP_DESIGN.md`.
3. Without the MCP server: run `loopengt design "<goal>"` in a terminal.
""",
        "<goal>",
    ),
    Skill(
        "loopengt-validate",
        "Validate a loopengt LoopSpec file and fix every problem it reports.",
        """\
Validate the loop spec $ARGUMENTS (default: `loop.yaml`).

1. Call the `validate_loop` tool of the `loopengt` MCP server with `path`. Each problem has
   a line, column, field path and message.
2. Fix each problem in the file at that line, then validate again until `ok` is true.
3. Without the MCP server: `loopengt validate <file>` prints `FILE:LINE:COL: message`.
""",
        "[file]",
    ),
    Skill(
        "loopengt-run",
        "Run a loopengt loop spec and report its outputs, status and stop reason.",
        """\
Run the loop spec $ARGUMENTS (default: `loop.yaml`).

1. Call `run_loop` of the `loopengt` MCP server with `path` (and `inputs` if the spec
   declares any). It returns a `run_id` at once.
2. Poll `get_run` with the run id until its status is final. On `waiting_approval`, show the
   pending question to the user and answer with `approve_run`.
3. Report the status, the stop reason if any, and the outputs. For a run that failed or was
   interrupted, `resume_run` continues it without repeating finished steps.
4. Without the MCP server: `loopengt run <file>`.
""",
        "[file]",
    ),
    Skill(
        "loopengt-trace",
        "Show what a loopengt run did: steps, model and tool calls, gates, retries, tokens.",
        """\
Show the trace of run $ARGUMENTS (default: the latest run from `list_runs`).

1. Call `get_trace` of the `loopengt` MCP server with the run id (`format: markdown`).
2. Summarize: each step's status, where time and tokens went, failed gates and retries.
3. Without the MCP server: `loopengt trace <run-id>`.
""",
        "[run-id]",
    ),
    Skill(
        "loopengt-eval",
        "Score a loopengt run: metrics from its trace and an LLM judge against the goal.",
        """\
Score run $ARGUMENTS (default: the latest run from `list_runs`).

1. Call `eval_run` of the `loopengt` MCP server with the run id. It returns metrics (steps,
   turns, latency, tokens, cost, gates, retries) and a 0-1 score per criterion with reasons.
2. Point out the weakest criterion and what in the spec would improve it.
3. Without the MCP server: `loopengt eval <run-id>`; a dataset: `loopengt eval <spec>
   --dataset <cases.yaml>`.
""",
        "[run-id]",
    ),
)


def all_skills() -> tuple[Skill, ...]:
    """The built-in skills, then every plugin's (a plugin's entry point names a `Skill` or
    a list of them); a plugin skill with a built-in's name is skipped."""
    from loopengt import plugins

    found = {skill.name: skill for skill in BUILTIN_SKILLS}
    for entry in plugins.usable("skills"):
        for skill in _skills(entry.value):
            found.setdefault(skill.name, skill)
    return tuple(found.values())


def _skills(value: object) -> Iterable[Skill]:
    items = value if isinstance(value, list | tuple) else [value]
    return [item for item in items if isinstance(item, Skill)]
