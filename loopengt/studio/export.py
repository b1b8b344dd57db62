"""`export_studio`: langgraph.json and loopengt_graphs.py, never over files loopengt did not
write."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loopengt import __version__
from loopengt.errors import UserInputError
from loopengt.studio.graph import studio_graph

if TYPE_CHECKING:
    pass

CONFIG_FILE = "langgraph.json"
MODULE_FILE = "loopengt_graphs.py"
MARKER_KEY = "LOOPENGT_STUDIO"
"""In `langgraph.json`'s `env`: marks a file `loopengt studio` wrote (and may overwrite).
An `env` entry, not a key of our own, because the LangGraph CLI warns on unknown keys."""
MARKER_VALUE = "written by `loopengt studio`, which overwrites this file: edit the specs"
MODULE_MARKER = "# Written by `loopengt studio`, which overwrites this file: edit the specs."


@dataclass
class StudioExport:
    """What `export_studio` wrote."""

    out: Path
    config_path: Path
    module_path: Path
    graphs: dict[str, str] = field(default_factory=dict)
    """Graph name -> factory name."""


# -- export -------------------------------------------------------------------------------------


def export_studio(
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    project: str | os.PathLike[str] | None = None,
    check_models: bool = False,
) -> StudioExport:
    """Write `langgraph.json` and `loopengt_graphs.py` for ``files`` into ``out`` (default:
    the project folder). Every spec is validated and compiled first, its models only with
    ``check_models`` (a deployment may have other keys than this shell); nothing is written
    when one fails, or when either file exists and was not written by loopengt."""
    from loopengt.project import find_project
    from loopengt.spec.loader import validate_files

    project_dir = Path(project).resolve() if project is not None else find_project()
    out_dir = Path(out).resolve() if out is not None else project_dir
    paths = [Path(f) for f in files]
    results = validate_files([str(p) for p in paths])
    problems = [line for result in results for line in result.problems]
    if problems:
        raise _Problems(problems)
    factories: dict[str, str] = {}
    graphs: dict[str, dict[str, str]] = {}
    entries: list[tuple[str, str, str]] = []
    for path, result in zip(paths, results, strict=True):
        spec = result.spec
        assert spec is not None
        if spec.name in graphs:
            raise UserInputError(
                f"{path}: another spec is also named {spec.name!r}; graph names must differ"
            )
        studio_graph(path, project=project_dir, check_models=check_models)
        factory = _factory_name(spec.name, set(factories.values()))
        factories[spec.name] = factory
        description = spec.description or spec.goal
        graphs[spec.name] = {
            "path": f"./{MODULE_FILE}:{factory}",
            "description": description,
        }
        entries.append((factory, spec.name, _relative(path.resolve(), out_dir)))
    config_path, module_path = out_dir / CONFIG_FILE, out_dir / MODULE_FILE
    _refuse_foreign(config_path, module_path)
    document = {
        "dependencies": ["."],
        "graphs": graphs,
        "env": {MARKER_KEY: MARKER_VALUE},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(config_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    _write(module_path, _module_text(entries, _relative(project_dir, out_dir)))
    return StudioExport(out_dir, config_path, module_path, factories)


class _Problems(UserInputError):
    """Spec problems, already one `FILE:LINE:COL: ...` line each."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))

    def messages(self) -> list[str]:
        return list(self.lines)


def _refuse_foreign(config_path: Path, module_path: Path) -> None:
    from loopengt.project import shown_path

    if config_path.exists() and not _is_ours_json(config_path):
        raise UserInputError(
            f"{shown_path(config_path)} was not written by loopengt studio; "
            "leaving it alone (move it, or pass --out DIR)"
        )
    if module_path.exists() and not _is_ours_module(module_path):
        raise UserInputError(
            f"{shown_path(module_path)} was not written by loopengt studio; "
            "leaving it alone (move it, or pass --out DIR)"
        )


def _is_ours_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    env = data.get("env") if isinstance(data, dict) else None
    return isinstance(env, dict) and MARKER_KEY in env


def _is_ours_module(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().rstrip("\n") == MODULE_MARKER
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _relative(path: Path, base: Path) -> str:
    """``path`` as the generated files name it: relative to ``base`` (posix), else absolute."""
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def _factory_name(spec_name: str, taken: set[str]) -> str:
    slug = re.sub(r"\W+", "_", spec_name.lower(), flags=re.ASCII).strip("_") or "loop"
    name = f"make_{slug}"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    return unique


_MODULE_HEAD = '''{marker}
"""LangGraph server entry points for loopengt specs, named in langgraph.json.

Every graph is built here, on import (`loopengt.studio.cached_graph`: once per process),
which the server does off its event loop; the factories it calls on every request only
look them up. Paths are relative to this file; models and settings come from the
project's .loopengt/config.toml. Written by loopengt {version}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopengt.studio import cached_graph

HERE = Path(__file__).resolve().parent
PROJECT = HERE / {project}
SPECS = {{{specs}
}}
GRAPHS = {{name: cached_graph(HERE / s, project=PROJECT) for name, s in SPECS.items()}}
'''

_FACTORY = '''

def {factory}() -> Any:
    """The {name} loop ({spec})."""
    return GRAPHS[{name_literal}]
'''


def _module_text(entries: list[tuple[str, str, str]], project: str) -> str:
    specs = "".join(f"\n    {_literal(name)}: {_literal(spec)}," for _, name, spec in entries)
    text = _MODULE_HEAD.format(
        marker=MODULE_MARKER, version=__version__, project=_literal(project), specs=specs
    )
    for factory, name, spec in entries:
        text += _FACTORY.format(
            factory=factory, name=_doc(name), spec=_doc(spec), name_literal=_literal(name)
        )
    return text


def _doc(text: str) -> str:
    """``text`` safe inside a docstring."""
    return " ".join(text.replace("\\", "/").replace('"', "'").split())


def _literal(text: str) -> str:
    """A Python string literal for ``text`` (a JSON string is one)."""
    return json.dumps(text, ensure_ascii=False)
