"""Dataset files for `loopengt eval --dataset`: cases (inputs and what to expect of the run),
loaded safely with a source map so every problem is reported as FILE:LINE:COL, and the
deterministic checks of one case's run. The format is documented in docs/evals.md."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loopengt.evals.metrics import RunMetrics
from loopengt.serialization import as_text
from loopengt.spec.errors import Problem, SpecError
from loopengt.spec.loader import read_spec_file
from loopengt.spec.yaml_source import YamlLoadError, load_yaml

CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputCheck(_Strict):
    """Checks on one step's output (default: the run's last output)."""

    step: str | None = Field(default=None, description="Whose output (default: the last).")
    exact: str | None = Field(default=None, description="The output, exactly (trimmed).")
    contains: list[str] = Field(default_factory=list, description="Texts it must contain.")
    not_contains: list[str] = Field(default_factory=list, description="Texts it must not.")
    regex: str | None = Field(default=None, description="A regular expression it must match.")
    json_schema: dict[str, Any] | None = Field(
        default=None, alias="schema", description="A JSON Schema the output must validate."
    )

    @field_validator("contains", "not_contains", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Expect(_Strict):
    """What a case's run must do to pass."""

    status: str = Field(default="completed", description="The run's final status.")
    output: OutputCheck | None = None
    outputs: list[OutputCheck] = Field(default_factory=list, description="Several outputs.")
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_latency_s: float | None = Field(default=None, gt=0)
    tools_called: list[str] = Field(default_factory=list, description="Tools it must call.")
    tools_not_called: list[str] = Field(default_factory=list, description="Tools it must not.")
    min_score: float | None = Field(
        default=None, ge=0, le=1, description="The judge's mean score must reach this."
    )


class Case(_Strict):
    id: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    reference: Any = Field(default=None, description="The expected answer, shown to the judge.")
    expect: Expect = Field(default_factory=Expect)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not CASE_ID.fullmatch(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (names a run and a file)")
        return value


class Dataset(_Strict):
    spec: str | None = Field(default=None, description="The LoopSpec, relative to this file.")
    judge_model: str | None = Field(default=None, description="Judge every case with this.")
    rubric: list[str] = Field(default_factory=list, description="Criteria besides the goal.")
    evaluators: list[str] = Field(
        default_factory=list,
        description="'module:attr' of evaluators with openevals' shape, run on every case.",
    )
    cases: list[Case] = Field(min_length=1)

    @field_validator("evaluators")
    @classmethod
    def _import_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if ":" not in path:
                raise ValueError(f"evaluator {path!r} must be 'module:attr'")
        return value


def load_dataset(path: Path | str) -> Dataset:
    """The dataset at ``path``; a `SpecError` (exit 2) listing every problem with its place."""
    name = str(path)
    try:
        data, source = load_yaml(read_spec_file(Path(path)))
    except YamlLoadError as exc:
        raise SpecError(name, [exc.problem]) from None
    if not isinstance(data, dict):
        raise SpecError(name, [Problem((), "a dataset must be a mapping with 'cases'", 1, 1)])
    try:
        dataset = Dataset.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            line, col = source.locate(loc, prefer_key=error["type"] == "extra_forbidden")
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(Problem(loc, message, line, col))
        raise SpecError(name, problems) from None
    seen: set[str] = set()
    for i, case in enumerate(dataset.cases):
        if case.id in seen:
            line, col = source.locate(("cases", i, "id"))
            raise SpecError(name, [Problem(("cases", i, "id"), "duplicate case id", line, col)])
        seen.add(case.id)
    return dataset


# -- checking one case's run ---------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def check_case(
    expect: Expect, status: str, outputs: dict[str, Any], metrics: RunMetrics
) -> list[Check]:
    """The deterministic checks of ``expect`` on a finished run."""
    checks = [Check("status", status == expect.status, f"{status} (expected {expect.status})")]
    for output_check in ([expect.output] if expect.output else []) + expect.outputs:
        checks += _output_checks(output_check, outputs)
    if expect.max_cost_usd is not None:
        ok = metrics.cost_usd <= expect.max_cost_usd
        checks.append(Check("max_cost_usd", ok, f"${metrics.cost_usd:.4f}"))
    if expect.max_latency_s is not None:
        ok = metrics.latency_s <= expect.max_latency_s
        checks.append(Check("max_latency_s", ok, f"{metrics.latency_s:.2f}s"))
    for tool in expect.tools_called:
        checks.append(Check(f"called {tool}", tool in metrics.tools_used))
    for tool in expect.tools_not_called:
        checks.append(Check(f"did not call {tool}", tool not in metrics.tools_used))
    return checks


def _output_checks(check: OutputCheck, outputs: dict[str, Any]) -> list[Check]:
    if check.step is not None:
        step, present = check.step, check.step in outputs
    else:
        step, present = (next(reversed(outputs)), True) if outputs else ("(last)", False)
    label = f"output {step}"
    if not present:
        return [Check(label, False, "no such output")]
    value = outputs[step]
    text = as_text(value).strip()
    checks = []
    if check.exact is not None:
        checks.append(Check(f"{label} exact", text == check.exact.strip(), _short(text)))
    for needle in check.contains:
        checks.append(Check(f"{label} contains {needle!r}", needle in text))
    for needle in check.not_contains:
        checks.append(Check(f"{label} does not contain {needle!r}", needle not in text))
    if check.regex is not None:
        found = re.search(check.regex, text) is not None
        checks.append(
            Check(f"{label} matches /{check.regex}/", found, "" if found else _short(text))
        )
    if check.json_schema is not None:
        checks.append(_schema_check(label, value, check.json_schema))
    return checks


def _schema_check(label: str, value: Any, schema: dict[str, Any]) -> Check:
    from loopengt.graph.structured import check as validate

    try:
        validate(json.loads(value) if isinstance(value, str) else value, schema)
    except json.JSONDecodeError:
        return Check(f"{label} JSON Schema", False, "not JSON")
    except ValueError as exc:
        return Check(f"{label} JSON Schema", False, str(exc))
    return Check(f"{label} JSON Schema", True)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
