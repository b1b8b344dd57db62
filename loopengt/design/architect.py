"""`design(goal)`: a model designs a LoopSpec; our validator checks it; the model repairs it.

The model answers with a *design object* — the LoopSpec plus why it looks the way it does —
as structured output. The spec goes through the same loader `loopengt validate` uses, so a
repair round shows the model exactly the messages a user would see (field path and
message). When no round yields a valid spec, the built-in template closest to the goal is
used instead, with the goal filled in, and the result says so: `design` never hands back an
invalid spec. The CLI and the MCP server are thin over :func:`adesign`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from loopengt.config import Config
from loopengt.design.render import render_spec
from loopengt.design.templates import Template, closest_template, list_templates
from loopengt.errors import UserInputError
from loopengt.spec import LoopSpec, SpecError, load_spec_text
from loopengt.spec.errors import format_path
from loopengt.spec.models import PatternName
from loopengt.spec.schema import loopspec_json_schema

DEFAULT_ATTEMPTS = 3
MAX_ATTEMPTS = 10
MAX_GOAL_CHARS = 4000
DESIGN_TEMPERATURE = 0.2
DESIGN_MAX_TOKENS = 2048
"""A design is a whole spec: more than a step's reply, but bounded (a weak model under a
JSON grammar can otherwise write until the context is full)."""
PATTERNS: tuple[str, ...] = PatternName.__args__  # type: ignore[attr-defined]

Progress = Callable[[str], None]


def architect_prompt() -> str:
    """The architect's system prompt, shipped as package data (also the MCP prompt)."""
    return files("loopengt.design").joinpath("architect.md").read_text(encoding="utf-8")


def design_schema() -> dict[str, Any]:
    """The JSON Schema of the design object: the reasons around a LoopSpec."""
    spec = loopspec_json_schema()
    defs = spec.pop("$defs", {})
    spec = {k: v for k, v in spec.items() if k not in ("$schema", "$id")}
    text = {"type": "string"}
    schema = {
        "type": "object",
        "properties": {
            "task_kind": text,
            "pattern_rationale": text,
            "spec": spec,
            "verification": text,
            "risks": {"type": "array", "items": text},
        },
        "required": ["task_kind", "pattern_rationale", "spec", "verification", "risks"],
        "$defs": defs,
    }
    _bound_lists(schema)
    return schema


MAX_ITEMS = 12


def _bound_lists(schema: Any) -> None:
    """Give every list in the schema at most MAX_ITEMS items: a loop needs no more, and a
    weak model decoding under the schema's grammar otherwise repeats items until it runs
    out of tokens."""
    if isinstance(schema, dict):
        if schema.get("type") == "array":
            schema.setdefault("maxItems", MAX_ITEMS)
        for value in schema.values():
            _bound_lists(value)
    elif isinstance(schema, list):
        for value in schema:
            _bound_lists(value)


@dataclass(frozen=True)
class Design:
    """A designed loop: a valid spec, its YAML and its design document."""

    goal: str
    spec: LoopSpec
    yaml: str
    """The spec as commented YAML (what is written to loop.yaml)."""
    doc: str
    """LOOP_DESIGN.md."""
    attempts: int
    """Model calls made (0 when the model was not asked)."""
    fallback: str | None = None
    """Why the loop is a template rather than the model's design (None: the model's own)."""
    template: str | None = None
    """The template fallen back to."""
    rationale: str = ""
    verification: str = ""
    risks: list[str] = field(default_factory=list)
    task_kind: str = ""


@dataclass
class _Answer:
    spec: LoopSpec
    notes: dict[str, Any]


def design(goal: str, **kwargs: Any) -> Design:
    """Synchronous :func:`adesign`."""
    return asyncio.run(adesign(goal, **kwargs))


async def adesign(
    goal: str,
    *,
    pattern: str | None = None,
    model: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    root: Path | str = ".",
    config: Config | None = None,
    on_progress: Progress | None = None,
) -> Design:
    """Design a loop for ``goal``: ask the model (``model``, default the configured one) at
    most ``attempts`` times, repairing with the validator's messages; else fall back to the
    closest template. Raises `UserInputError` for bad arguments or a model that cannot be
    reached (nothing designed)."""
    goal = " ".join(goal.split())
    if not goal:
        raise UserInputError("design: the goal is empty; say what the loop should achieve")
    if len(goal) > MAX_GOAL_CHARS:
        raise UserInputError(
            f"design: the goal is {len(goal):,} characters; say it in at most {MAX_GOAL_CHARS:,}"
        )
    if pattern is not None and pattern.replace("-", "_") not in PATTERNS:
        raise UserInputError(f"--pattern {pattern!r}: choose one of {', '.join(PATTERNS)}")
    pattern = pattern.replace("-", "_") if pattern else None
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise UserInputError(f"--attempts {attempts}: choose 1 to {MAX_ATTEMPTS}")
    config = config or Config.load(root)
    say = on_progress or (lambda _: None)
    templates = list_templates(root)

    answer, reason, calls = await _ask(goal, pattern, model, attempts, config, say)
    if answer is not None:
        notes = answer.notes
        return _design(
            goal,
            answer.spec,
            calls,
            rationale=_text(notes.get("pattern_rationale")),
            verification=_text(notes.get("verification")) or verification_of(answer.spec),
            risks=[_text(r) for r in notes.get("risks") or [] if _text(r)] or risks_of(answer.spec),
            task_kind=_text(notes.get("task_kind")),
        )
    template = closest_template(goal, templates, pattern)
    why = f"the model gave no valid spec in {attempts} attempt(s), the last: {_first(reason)}"
    say(f"falling back to the built-in template '{template.name}' ({why})")
    return _fallback(goal, template, calls, why)


async def _ask(
    goal: str,
    pattern: str | None,
    model_name: str | None,
    attempts: int,
    config: Config,
    say: Progress,
) -> tuple[_Answer | None, str, int]:
    """The model's valid answer (or None), the last reason it was not, and calls made."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from loopengt.graph.structured import parse_json, response_format, supports_json_schema
    from loopengt.providers.registry import resolve_model

    chat = resolve_model(model_name, temperature=DESIGN_TEMPERATURE, config=config)
    options: dict[str, Any] = {"max_tokens": DESIGN_MAX_TOKENS}
    if supports_json_schema(chat):
        options["response_format"] = response_format(design_schema(), "loop_design")
    bound = chat.bind(**options)
    ask = f"Design a loop for this goal:\n{goal}"
    if pattern:
        ask += f"\nUse the pattern `{pattern}`."
    messages: list[Any] = [SystemMessage(architect_prompt()), HumanMessage(ask)]
    reason = "no answer"
    for attempt in range(1, attempts + 1):
        say(f"attempt {attempt} of {attempts}: asking {_model_label(model_name, config)}")
        try:
            reply = await bound.ainvoke(messages)
        except Exception as exc:
            reason = _unusable(exc, config)
            say(f"attempt {attempt} of {attempts}: the model call failed: {reason}")
            continue
        raw = str(getattr(reply, "text", reply))
        try:
            answer = _check(parse_json(raw), pattern)
        except ValueError as exc:
            reason = str(exc)
            say(f"attempt {attempt} of {attempts}: {_first(reason)}")
            messages += [
                AIMessage(raw),
                HumanMessage(
                    f"That design is not valid:\n{_capped(reason)}\n"
                    "Answer again with the whole corrected JSON object."
                ),
            ]
            continue
        say(f"attempt {attempt} of {attempts}: the spec is valid")
        return answer, "", attempt
    return None, reason, attempts


def _unusable(exc: Exception, config: Config) -> str:
    """The reason a model call failed; a model that cannot be reached or used at all (down,
    a bad key, an unknown model) ends the design at once: no reply will come."""
    from loopengt.graph.policy import is_transient
    from loopengt.providers.errors import explain_model_error

    reason = explain_model_error(exc, config)
    if is_transient(exc) or getattr(exc, "status_code", None) in (401, 403, 404):
        raise UserInputError(f"design: {reason}") from None
    if isinstance(exc, UserInputError):
        raise exc
    return reason


def _check(value: Any, pattern: str | None) -> _Answer:
    """The design object's spec, validated by the loader (raises ValueError with every
    problem as ``field.path: message``, the form a repair prompt needs)."""
    if not isinstance(value, dict):
        raise ValueError("the answer must be a JSON object with a 'spec' field")
    data = value.get("spec")
    if data is None and "agents" in value:  # the spec alone, without the design around it
        data, value = value, {}
    if not isinstance(data, dict):
        raise ValueError("spec: required field is missing (the LoopSpec as a JSON object)")
    try:
        spec = load_spec_text(yaml.safe_dump(data, sort_keys=False), filename="loop.yaml")
    except SpecError as exc:
        lines = [f"spec.{format_path(p.path)}: {p.message}" for p in exc.problems]
        raise ValueError("\n".join(lines)) from None
    if pattern and spec.pattern != pattern:
        raise ValueError(f"spec.pattern: must be '{pattern}' as asked, got '{spec.pattern}'")
    return _Answer(spec, value)


def _fallback(goal: str, template: Template, calls: int, why: str) -> Design:
    spec = template.require().model_copy(update={"goal": goal})
    rationale = (
        f"Fell back to the built-in template '{template.name}' ({spec.pattern}): {why}. "
        f"It was chosen as the template closest to the goal. {template.purpose}"
    )
    return _design(
        goal,
        spec,
        calls,
        rationale=rationale,
        verification=verification_of(spec),
        risks=risks_of(spec),
        fallback=why,
        template=template.name,
    )


def _design(goal: str, spec: LoopSpec, calls: int, **notes: Any) -> Design:
    from loopengt.design.document import design_document

    text = render_spec(spec)
    load_spec_text(text, filename="loop.yaml")  # never hand back a spec that does not load
    draft = Design(goal=goal, spec=spec, yaml=text, doc="", attempts=calls, **notes)
    return replace(draft, doc=design_document(draft))


def verification_of(spec: LoopSpec) -> str:
    """How ``spec`` checks its own work, read from its gates, evaluator and stop rules."""
    checks = []
    for step in spec.steps:
        if step.gate:
            checks.append(f"a {step.gate.kind} gate on step '{step.name}'")
    checks += [f"a {g.kind} gate on step '{g.step}'" for g in spec.policy.gates]
    if spec.evaluator:
        checks.append(
            f"step '{spec.evaluator.evaluator}' judges '{spec.evaluator.generator}', which is "
            "rewritten with its feedback until it passes"
        )
    if spec.rubric:
        checks.append("a rubric for evals: " + "; ".join(spec.rubric))
    if spec.policy.stop_conditions:
        checks.append(f"{len(spec.policy.stop_conditions)} stop condition(s)")
    if not checks:
        return "No automatic check: read the final step's output, or add a gate."
    return "The loop checks its work with " + ", ".join(checks) + "."


def risks_of(spec: LoopSpec) -> list[str]:
    """What the policy bounds, in sentences a reader can check against the spec."""
    policy = spec.policy
    risks = ["A weak model may produce vague or wrong outputs; read them before relying on them."]
    if policy.max_turns:
        risks.append(f"A loop that does not converge is stopped after {policy.max_turns} turns.")
    if policy.step_timeout_seconds:
        risks.append(
            f"A hanging model call is cut off after {policy.step_timeout_seconds:g}s and retried "
            f"up to {policy.retry.attempts} attempt(s) in all."
        )
    if policy.budget.max_tokens or policy.budget.max_cost_usd:
        risks.append("Spending is capped by the budget; the run stops when it is used up.")
    return risks


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, str | int | float) else ""


def _capped(reason: str, limit: int = 20) -> str:
    """At most ``limit`` problems for the repair prompt (a weak model can make hundreds)."""
    lines = reason.splitlines()
    more = [f"... and {len(lines) - limit} more problems like these"] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)


def _first(reason: str) -> str:
    lines = reason.splitlines()
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return lines[0] + more


def _model_label(model: str | None, config: Config) -> str:
    from loopengt.providers.registry import default_model_name

    return model or default_model_name(config) or "the default model"


def write_design(
    result: Design, spec_path: Path, doc_path: Path | None, *, force: bool = False
) -> list[Path]:
    """Write loop.yaml (and LOOP_DESIGN.md); nothing is written when either exists and
    ``force`` is not set."""
    from loopengt.serialization import write_atomically

    targets = [(spec_path, result.yaml)] + ([(doc_path, result.doc)] if doc_path else [])
    if not force:
        for path, _ in targets:
            if path.exists():
                raise UserInputError(f"{path} exists; use --force to overwrite it")
    for path, text in targets:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text)
        except OSError as exc:
            raise UserInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return [path for path, _ in targets]
