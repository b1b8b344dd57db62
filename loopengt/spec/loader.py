"""YAML text or file -> validated :class:`LoopSpec`, or a :class:`SpecError` with every problem."""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from loopengt.spec.checks import check_references, check_warnings
from loopengt.spec.errors import Problem, SpecError, did_you_mean
from loopengt.spec.models import LoopSpec
from loopengt.spec.pattern_checks import role_problems
from loopengt.spec.yaml_source import MAX_SPEC_BYTES, SourceMap, YamlLoadError, load_yaml


def load_spec(source: str | os.PathLike[str]) -> LoopSpec:
    """Load and validate a LoopSpec from a file path.

    Raises :class:`SpecError` listing every problem, each with its line and column.
    """
    path = Path(source)
    return load_spec_text(read_spec_file(path), filename=str(source))


def read_spec_file(path: Path) -> str:
    name = str(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise SpecError(name, [Problem((), "not a file")])
        if size > MAX_SPEC_BYTES:
            message = (
                f"spec is larger than {MAX_SPEC_BYTES / 1e6:g} MB ({size:,} bytes); refusing it"
            )
            raise SpecError(name, [Problem((), message)])
        with path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(name, [Problem((), "no such file")]) from None
    except OSError as exc:
        raise SpecError(name, [Problem((), f"cannot read: {exc.strerror or exc}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(name, [Problem((), "not UTF-8 text", line, 1)]) from None


def load_spec_text(text: str, *, filename: str = "<spec>") -> LoopSpec:
    try:
        data, source = load_yaml(text)
    except YamlLoadError as exc:
        raise SpecError(filename, [exc.problem]) from None
    if not isinstance(data, dict):
        raise SpecError(filename, [Problem((), "a LoopSpec must be a YAML mapping", 1, 1)])

    problems = [_model_problem(e, source) for e in _validation_errors(data)]
    problems += [_place(p, source) for p in check_references(data)]
    spec: LoopSpec | None = None
    if not problems:
        spec = LoopSpec.model_validate(data)
        problems += [_place(p, source) for p in role_problems(spec)]
    if problems or spec is None:
        raise SpecError(filename, _unique(problems))
    return spec


def check_spec(spec: LoopSpec, *, filename: str = "<spec>") -> LoopSpec:
    """Run the checks that loading runs on a LoopSpec made or changed in Python.

    ``LoopSpec.model_validate`` checks only the shape, and ``model_copy(update=...)`` not even
    that; a compiler given such a spec could meet a dangling reference or a pattern it cannot
    build. Raises :class:`SpecError` like :func:`load_spec`, without positions (there is no
    source).
    """
    data = spec.model_dump(by_alias=True, exclude_none=True)
    problems = [_model_problem(e, SourceMap()) for e in _validation_errors(data)]
    problems += check_references(data)
    if not problems:  # the roles of the validated copy: a model_copy may hold plain dicts
        problems = role_problems(LoopSpec.model_validate(data))
    if problems:
        raise SpecError(filename, _unique(problems))
    return spec


def _validation_errors(data: dict[str, Any]) -> list[Any]:
    try:
        LoopSpec.model_validate(data)
    except ValidationError as exc:
        return list(exc.errors(include_url=False))
    return []


def _place(problem: Problem, source: SourceMap) -> Problem:
    line, col = source.locate(problem.path)
    return Problem(problem.path, problem.message, line, col)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _model_problem(error: Any, source: SourceMap) -> Problem:
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        field = str(loc[-1]) if loc else ""
        hint = did_you_mean(field, _fields_at(loc[:-1]))
        line, col = source.locate(loc, prefer_key=True)
        return Problem(loc, f"unknown field{hint}", line, col)
    line, col = source.locate(loc)
    if kind == "missing":
        return Problem(loc, "required field is missing", line, col)
    message = str(error["msg"])
    if kind == "too_short":
        least = (error.get("ctx") or {}).get("min_length", 1)
        return Problem(loc, f"must have at least {least} item(s)", line, col)
    if kind == "model_type":
        return Problem(loc, f"must be a mapping, got {_short(error.get('input'))}", line, col)
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif message.startswith("Input should be"):
        message = "must be " + message[len("Input should be ") :].split(", unable to")[0]
        message += f", got {_short(error.get('input'))}"
    else:
        message = message[:1].lower() + message[1:]
    if kind == "literal_error" and isinstance(error.get("input"), str):
        choices = (error.get("ctx") or {}).get("expected", "")
        message += did_you_mean(error["input"], [c.strip(" '") for c in choices.split(",")])
    return Problem(loc, message, line, col)


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the member type to `loc` for unions, e.g. 'str' or 'list[str]'
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) accepted at ``loc`` of a LoopSpec, for "did you mean"."""
    annotation: Any = LoopSpec
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int) or not _is_model(annotation):
            origin = typing.get_origin(annotation)
            if origin in (list, dict):
                annotation = typing.get_args(annotation)[-1]
            continue
        field = annotation.model_fields.get(part) or next(
            (f for f in annotation.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        annotation = field.annotation
    annotation = _unwrap(annotation)
    if not _is_model(annotation):
        return []
    return [f.alias or name for name, f in annotation.model_fields.items()]


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validating one spec file."""

    path: str
    spec: LoopSpec | None
    problems: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    """Lines for what validates but is likely a mistake (they do not make it fail)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def spec_warnings(text: str, *, filename: str = "<spec>") -> list[str]:
    """The warning lines (FILE:LINE:COL: field: warning: ...) of a spec that validates."""
    data, source = load_yaml(text)
    return [_place(p, source).format(filename) for p in check_warnings(data)]


def validate_files(paths: list[str]) -> list[ValidationResult]:
    results = []
    for path in paths:
        try:
            text = read_spec_file(Path(path))
            spec = load_spec_text(text, filename=path)
            warnings = tuple(spec_warnings(text, filename=path))
            results.append(ValidationResult(path, spec, (), warnings))
        except SpecError as exc:
            results.append(ValidationResult(path, None, tuple(exc.lines())))
    return results
