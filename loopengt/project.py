"""Project scaffolding: the `.loopengt/` folder of a working directory."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = ".loopengt"

CONFIG_TOML = """\
# loopengt project configuration. Keys are read from the environment only, never from here.

[llm]
# Default model for agents and steps that name none ("provider:model", or "local").
# model = "openai:gpt-4o-mini"
# base_url = "http://127.0.0.1:8080/v1"   # any OpenAI-compatible server
# api_key_env = "OPENAI_API_KEY"          # the variable that holds the key

[storage]
# Checkpoints and the run index; default: SQLite in .loopengt/loopengt.db
# checkpointer = "postgresql://user@localhost:5432/loopengt"

[trace]
# max_text_chars = 4000   # prompts and responses are truncated to this in traces
"""


PROJECT_ENV = "LOOPENGT_PROJECT"
"""Names the project folder (`loopengt --project DIR` sets it for the command)."""


def find_project(start: Path | None = None) -> Path:
    """The project a command in ``start`` (default: the working directory) works on:
    `LOOPENGT_PROJECT` if set, else the nearest folder upwards holding `.loopengt/` (as git
    finds `.git/`), else ``start`` itself (where a first run creates `.loopengt/`)."""
    import os

    named = os.environ.get(PROJECT_ENV)
    if named:
        return Path(named).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STATE_DIR).is_dir():
            return folder
    return here


def shown_path(path: Path) -> str:
    """A path as messages name it: relative to the working directory if inside it, else
    `~/...` under the home folder, else as it is."""
    resolved = path.resolve()
    for base, label in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return label + str(resolved.relative_to(base))
        except ValueError:
            continue
    return str(path)


@dataclass
class InitReport:
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def builtin_templates_dir() -> Path:
    """The built-in templates: inside the wheel (``loopengt/_templates``), else the
    repository's ``templates/`` (an editable install)."""
    package = Path(__file__).resolve().parent
    shipped = package / "_templates"
    return shipped if shipped.is_dir() else package.parent / "templates"


def init_project(root: Path | str = ".") -> InitReport:
    """Create `.loopengt/config.toml`, `prompts/` and `templates/` (with a copy of each
    built-in template, to change or shadow); never overwrite."""
    state = Path(root) / STATE_DIR
    report = InitReport()
    for folder in (state, state / "prompts", state / "templates"):
        (report.kept if folder.is_dir() else report.created).append(folder)
        folder.mkdir(parents=True, exist_ok=True)
    _create(state / "config.toml", CONFIG_TOML, report)
    _copy_templates(state / "templates", report)
    starter = (builtin_templates_dir() / STARTER_TEMPLATE / "loop.yaml").read_text()
    _create(Path(root) / STARTER, starter, report)
    return report


def _create(path: Path, text: str, report: InitReport) -> None:
    try:
        with path.open("x", encoding="utf-8") as fh:  # "x": fails rather than overwrite
            fh.write(text)
        report.created.append(path)
    except FileExistsError:
        report.kept.append(path)


STARTER, STARTER_TEMPLATE = "loop.yaml", "reviewer-retry"
"""`init` gives a new user a loop to run: the reviewer-retry template (a writer, a reviewer
and a gate; it completes on the embedded model)."""

NEXT_STEPS = """next:
  loopengt run loop.yaml -i draft="Our new CSV export ships on Monday."
  loopengt trace <run-id>        # what happened, step by step
  set [llm] model in .loopengt/config.toml to use a real model (the default is the
  small embedded one); `loopengt template list` shows other starting points"""


def _copy_templates(target: Path, report: InitReport) -> None:
    for source in sorted(builtin_templates_dir().glob("*/loop.yaml")):
        folder = target / source.parent.name
        if folder.exists():  # a project template is the user's: never touched
            report.kept.append(folder)
            continue
        shutil.copytree(source.parent, folder)
        report.created.append(folder)
