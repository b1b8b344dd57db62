"""Templates: complete LoopSpecs to start from, found in three places.

- **built-in**: ``templates/`` in the repository, shipped in the wheel as
  ``loopengt/_templates``;
- **project**: ``.loopengt/templates/`` of the project (``loopengt init`` copies the built-in
  ones there); a project template shadows the built-in one of the same name;
- **plugins**: the entry point group ``loopengt.templates``; each entry point loads to a
  folder (a path, or a callable returning one) laid out like ``templates/``.

A template is a folder ``NAME/`` with ``loop.yaml`` and a ``README.md``. One that does not
load or validate is still listed, as broken with the reason: a bad plugin must not take the
command down. Names compare with ``_`` and ``-`` alike (``planner_executor``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt.design.render import render_spec
from loopengt.errors import UserInputError
from loopengt.project import STATE_DIR, builtin_templates_dir
from loopengt.spec import LoopSpec, SpecError, load_spec
from loopengt.spec.errors import did_you_mean

SPEC_FILE = "loop.yaml"
README_FILE = "README.md"
BUILTIN = "built-in"
PROJECT = "project"


@dataclass(frozen=True)
class Template:
    """One template and where it came from; ``spec`` is None when it is broken."""

    name: str
    source: str
    """``built-in``, ``project`` or ``plugin <distribution>``."""
    path: Path | None
    """The template's ``loop.yaml`` (None when a plugin failed before naming one)."""
    spec: LoopSpec | None = None
    problem: str | None = None
    """Why the template is broken: the first validation message, or the plugin's error."""

    @property
    def ok(self) -> bool:
        return self.spec is not None

    @property
    def pattern(self) -> str:
        return self.spec.pattern if self.spec else "?"

    @property
    def purpose(self) -> str:
        if self.spec is None:
            return f"broken: {self.problem}"
        purpose = self.spec.metadata.get("purpose")
        return str(purpose) if purpose else self.spec.description or self.spec.goal

    @property
    def keywords(self) -> list[str]:
        words = self.spec.metadata.get("keywords", []) if self.spec else []
        return [str(w).lower() for w in words] if isinstance(words, list) else []

    def text(self) -> str:
        """The template file as it is stored."""
        assert self.path is not None
        return self.path.read_text(encoding="utf-8")

    def readme(self) -> str:
        readme = self.path.with_name(README_FILE) if self.path else None
        return readme.read_text(encoding="utf-8") if readme and readme.is_file() else ""

    def render(self, goal: str | None = None) -> str:
        """The spec as `template use` writes it, with ``goal`` in place of the template's."""
        spec = self.require()
        if goal is not None and goal.strip():
            spec = spec.model_copy(update={"goal": " ".join(goal.split())})
        return render_spec(spec)

    def require(self) -> LoopSpec:
        if self.spec is None:
            broken = f"template {self.name!r} ({self.source}) is broken: {self.problem}"
            raise UserInputError(broken)
        return self.spec


def key(name: str) -> str:
    """Names compare without regard to case or ``_`` versus ``-``."""
    return name.strip().lower().replace("_", "-")


def list_templates(root: Path | str = ".") -> list[Template]:
    """Every template by name: project over plugins over built-in; broken ones included.
    Sorted by name."""
    found: dict[str, Template] = {}
    for template in _builtin():
        found[key(template.name)] = template
    for template in _plugins():
        found.setdefault(key(template.name), template)  # a plugin does not replace a built-in
    for template in _folder(Path(root) / STATE_DIR / "templates", PROJECT):
        found[key(template.name)] = template
    return sorted(found.values(), key=lambda t: key(t.name))


def get_template(name: str, root: Path | str = ".") -> Template:
    """The template called ``name``; a `UserInputError` naming the choices when none is."""
    templates = list_templates(root)
    for template in templates:
        if key(template.name) == key(name):
            return template
    names = [t.name for t in templates]
    hint = did_you_mean(key(name), names)
    raise UserInputError(f"no template {name!r}{hint} (templates: {', '.join(names)})")


def _builtin() -> Iterator[Template]:
    return _folder(builtin_templates_dir(), BUILTIN)


def _folder(folder: Path, source: str) -> Iterator[Template]:
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*/{SPEC_FILE}")):
        yield _load(path.parent.name, path, source)


def _load(name: str, path: Path, source: str) -> Template:
    try:
        return Template(name, source, path, spec=load_spec(path))
    except SpecError as exc:
        return Template(name, source, path, problem=exc.lines()[0])


def _plugins() -> Iterator[Template]:
    from loopengt import plugins

    for entry in plugins.load("templates"):
        source = f"plugin {entry.plugin}"
        problem, folder = entry.problem, None
        if problem is None:
            try:
                folder = _plugin_folder(entry.value)
            except Exception as exc:  # a broken plugin is listed, never fatal
                problem = f"failed to load ({plugins.reason(exc)})"
        if folder is not None and not folder.is_dir():
            problem = f"{folder} is not a folder"
        if folder is None or problem is not None:
            yield Template(entry.name, source, None, problem=f"plugin skipped: {problem}")
            continue
        yield from _folder(folder, source)


def _plugin_folder(target: Any) -> Path:
    if callable(target):
        target = target()
    return Path(str(target))


# -- the closest template to a goal ------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def closest_template(goal: str, templates: list[Template], pattern: str | None = None) -> Template:
    """The usable template that fits ``goal`` best, deterministically (no embeddings).

    Each goal word found among a template's keywords scores 3 (a prefix match, such as
    "reviews" for "review", scores 2), one found in its description or goal scores 1; a
    template of the asked ``pattern`` wins over any other. Ties go to the earlier name.
    """
    usable = [t for t in templates if t.ok]
    if not usable:
        raise UserInputError("no usable template to fall back to")
    words = set(_WORD.findall(goal.lower()))

    def score(template: Template) -> tuple[int, int]:
        spec = template.require()
        keywords = {w for k in template.keywords for w in _WORD.findall(k)}
        prose = set(_WORD.findall(f"{spec.description} {spec.goal}".lower()))
        points = 0
        for word in words:
            if word in keywords:
                points += 3
            elif len(word) > 3 and any(_related(word, k) for k in keywords):
                points += 2
            elif len(word) > 3 and word in prose:
                points += 1
        return (int(pattern is not None and spec.pattern == pattern), points)

    return max(usable, key=score)  # max keeps the first of equals: the earlier name


def _related(word: str, keyword: str) -> bool:
    """ "reviews" and "review", "cleaning" and "clean": one starts with the other."""
    return len(keyword) > 3 and (keyword.startswith(word) or word.startswith(keyword))
