"""What every check on a spec's raw data shares: walking the parsed YAML, the declared names,
and collecting problems.

The checks (:mod:`loopengt.spec.checks`, :mod:`loopengt.spec.pattern_checks`) run on the parsed
YAML rather than on the validated model so that a type error in one place does not hide a
dangling reference in another. Values of the wrong type are skipped; the model reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from loopengt.spec.errors import Problem, did_you_mean

Path = tuple[str | int, ...]
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
END = "END"


def items(data: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, mapping) for each mapping in the list ``data[key]``."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def strings(data: Any, key: str) -> Iterator[tuple[int, str]]:
    """(index, string) for each string in the list ``data[key]``."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield i, item


def reachable(start: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reachable from ``start`` along ``edges`` (``start`` itself only through a
    cycle)."""
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    return seen


class CheckerBase:
    """The declared names of a spec's raw data, and the problems found so far."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        """What validates but is likely not what the author meant (`loopengt validate` shows
        them; loading ignores them)."""
        self.pattern = data.get("pattern", "sequential")
        self.agents = self._names("agents")
        self.steps = self._names("steps")
        self.tools = self._names("tools")
        declared = data.get("inputs")
        self.inputs = set(declared) if isinstance(declared, dict) else set()

    def add(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: Path, message: str) -> None:
        self.warnings.append(Problem(path, f"warning: {message}"))

    def _names(self, key: str) -> list[str]:
        seen: dict[str, int] = {}
        for i, item in items(self.data, key):
            name = string(item.get("name"))
            if name is None:
                continue
            if not NAME_RE.match(name):
                self.add(
                    (key, i, "name"),
                    f"invalid name {name!r}: use letters, digits, '_' and '-' only",
                )
            elif "__" in name and key in ("agents", "steps"):
                # they name graph nodes, and loopengt's own nodes are STEP__passed,
                # STEP__join, STEP__dispatch (LangGraph's __start__ and __end__)
                self.add(
                    (key, i, "name"),
                    f"invalid name {name!r}: '__' is reserved for the nodes loopengt adds",
                )
            if name in seen:
                kind = key[:-1]
                self.add(
                    (key, i, "name"),
                    f"duplicate {kind} name {name!r} (first defined at {key}[{seen[name]}])",
                )
            else:
                seen[name] = i
        return list(seen)

    def ref(self, path: Path, value: Any, kind: str, allow_end: bool = False) -> None:
        known = {"agent": self.agents, "step": self.steps, "tool": self.tools}[kind]
        if not isinstance(value, str) or value in known or (allow_end and value == END):
            return
        self.add(path, f"unknown {kind} {value!r}{did_you_mean(value, known)}")

    def map_over(self, path: Path, value: Any) -> None:
        if not isinstance(value, str):
            return
        head, _, key = value.partition(".")
        if head != "input" or not key:
            self.add(path, f"map_over must be 'input.KEY', got {value!r}")
        elif key not in self.inputs:
            self.add(path, f"unknown input {key!r}{did_you_mean(key, self.inputs)}; declare it")

    def requires(self) -> dict[str, list[str]]:
        """Each (first so named) step's known dependencies, whichever spelling declared them."""
        graph: dict[str, list[str]] = {}
        for _, step in items(self.data, "steps"):
            name = string(step.get("name"))
            if name is None or name in graph:
                continue
            deps = [d for _, d in strings(step, "depends_on")]
            deps += [string(d.get("step_name")) or "" for _, d in items(step, "dependencies")]
            graph[name] = [d for d in deps if d in self.steps and d != name]
        return graph
