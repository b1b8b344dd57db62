"""Spec problems: one line each, ``FILE:LINE:COL: field.path: message``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loopengt.errors import UserInputError


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str
    line: int = 1
    column: int = 1

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}:{self.column}"
        field = format_path(self.path)
        return f"{where}: {field}: {self.message}" if field else f"{where}: {self.message}"


class SpecError(UserInputError):
    """A spec failed to load or validate; carries every problem found."""

    def __init__(self, filename: str, problems: Sequence[Problem]) -> None:
        self.filename = filename
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, format_path(p.path)))
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.format(self.filename) for p in self.problems]

    def messages(self) -> list[str]:
        return self.lines()


def format_path(path: Iterable[str | int]) -> str:
    """('steps', 2, 'agent') -> 'steps[2].agent'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a candidate is close to ``name``, else ''."""
    if not isinstance(name, str):
        return ""
    names = [c for c in candidates if isinstance(c, str)]  # raw data may hold other keys
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
