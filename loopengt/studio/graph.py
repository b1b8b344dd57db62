"""The graph the LangGraph server runs for a spec: the loop inside a parent graph whose
input is the declared inputs (see the package docstring)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopengt.errors import UserInputError

if TYPE_CHECKING:
    from loopengt.spec.models import LoopSpec

LOOP_NODE, OUTCOME_NODE = "loop", "outcome"
OUTPUT_FIELDS = ("outputs", "status", "stop_reason")
RESERVED = frozenset((*OUTPUT_FIELDS, LOOP_NODE, OUTCOME_NODE))
"""Names the parent graph uses itself: a declared input cannot have one."""
NOT_COMPLETED = ("failed", "stopped", "rejected")


class LoopNotCompleted(RuntimeError):
    """The loop ended failed, stopped or rejected: the server marks the run as an error."""


# -- the graph the server runs ----------------------------------------------------------------


def studio_graph(
    spec_path: str | os.PathLike[str],
    *,
    project: str | os.PathLike[str] | None = None,
    check_models: bool = True,
) -> Any:
    """The spec's loop inside a parent graph whose input is the declared inputs and whose
    output is `outputs`, `status` and `stop_reason` (see the module docstring); compiled
    without a checkpointer or store. ``project`` is the folder whose `.loopengt/config.toml`
    gives models and settings (default: `find_project()`)."""
    from langchain_core.runnables import RunnableLambda
    from langgraph.graph import END, START, StateGraph

    from loopengt.compile import compile_spec
    from loopengt.config import Config
    from loopengt.providers.errors import RESUME_HINTS
    from loopengt.spec.loader import load_spec

    spec = load_spec(spec_path)
    _check_input_names(spec, str(spec_path))
    config = Config.load(Path(project) if project is not None else None)
    loop = compile_spec(spec, config=config, check_models=check_models)
    input_schema = input_typeddict(spec)
    output_schema = _output_typeddict()
    state = _typeddict(
        "StudioState", {**input_schema.__annotations__, **output_schema.__annotations__}
    )

    def run_loop(values: dict[str, Any]) -> dict[str, Any]:
        hints = RESUME_HINTS.set(False)
        try:
            return _loop_result(loop.invoke({"input": studio_inputs(spec, values)}))
        finally:
            RESUME_HINTS.reset(hints)

    async def arun_loop(values: dict[str, Any]) -> dict[str, Any]:
        hints = RESUME_HINTS.set(False)
        try:
            return _loop_result(await loop.ainvoke({"input": studio_inputs(spec, values)}))
        finally:
            RESUME_HINTS.reset(hints)

    def outcome(values: dict[str, Any]) -> dict[str, Any]:
        status = values.get("status")
        if status in NOT_COMPLETED:
            reason = values.get("stop_reason") or "no reason given"
            raise LoopNotCompleted(reason if reason.startswith(status) else f"{status}: {reason}")
        return {}

    builder: Any = StateGraph(state, input_schema=input_schema, output_schema=output_schema)
    # both APIs, as every loopengt node: the server awaits `ainvoke`, scripts may `invoke`
    builder.add_node(LOOP_NODE, RunnableLambda(run_loop, afunc=arun_loop, name=LOOP_NODE))
    builder.add_node(OUTCOME_NODE, outcome)
    builder.add_edge(START, LOOP_NODE)
    builder.add_edge(LOOP_NODE, OUTCOME_NODE)
    builder.add_edge(OUTCOME_NODE, END)
    return builder.compile(name=spec.name)


_CACHE: dict[tuple[str, str, int], Any] = {}


def cached_graph(
    spec_path: str | os.PathLike[str], *, project: str | os.PathLike[str] | None = None
) -> Any:
    """`studio_graph`, built once per process for a spec file (and version of it) and
    project: the server executes the generated module once per graph it names."""
    path = Path(spec_path).resolve()
    root = Path(project).resolve() if project is not None else None
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        version = 0  # load_spec reports the missing file
    key = (str(path), str(root), version)
    graph = _CACHE.get(key)
    if graph is None:
        graph = _CACHE[key] = studio_graph(path, project=root)
    return graph


def _loop_result(final: dict[str, Any]) -> dict[str, Any]:
    return {
        "outputs": dict(final.get("outputs") or {}),
        "status": final.get("status") or "completed",
        "stop_reason": final.get("stop_reason"),
    }


def input_typeddict(spec: LoopSpec) -> Any:
    """A TypedDict with one field per declared input: its description, default and type."""
    from typing import Annotated, NotRequired, Required

    from pydantic import Field

    from loopengt.runs.engine import _mapped_inputs

    mapped = set(_mapped_inputs(spec))
    fields: dict[str, Any] = {}
    for name, declared in spec.inputs.items():
        kind = list[Any] if name in mapped else _type_of(declared.default)
        info: dict[str, Any] = {}
        if declared.description:
            info["description"] = declared.description
        if declared.default is not None:
            info["default"] = declared.default
        typed = Annotated[kind, Field(**info)] if info else kind
        needed = declared.required and declared.default is None
        fields[name] = Required[typed] if needed else NotRequired[typed]
    schema = _typeddict(f"{_identifier(spec.name, 'Loop')}Input", fields, total=True)
    schema.__doc__ = spec.description or spec.goal
    return schema


def _typeddict(name: str, fields: dict[str, Any], *, total: bool = False) -> Any:
    """A TypedDict made at run time (its keys are the spec's input names, any string)."""
    from typing_extensions import TypedDict

    make: Any = TypedDict
    return make(name, fields, total=total)


def _type_of(default: Any) -> Any:
    for kind in (bool, int, float, str):
        if isinstance(default, kind):
            return kind
    if isinstance(default, list):
        return list[Any]
    if isinstance(default, dict):
        return dict[str, Any]
    return str


def _output_typeddict() -> Any:
    from typing import Annotated

    from pydantic import Field

    return _typeddict(
        "LoopOutput",
        {
            "outputs": Annotated[
                dict[str, Any], Field(description="Each step's output, by step name.")
            ],
            "status": Annotated[
                str,
                Field(description="completed, stopped (a policy limit), failed or rejected."),
            ],
            "stop_reason": Annotated[
                str | None, Field(description="Why the loop ended early, if it did.")
            ],
        },
    )


def studio_inputs(spec: LoopSpec, values: dict[str, Any]) -> dict[str, Any]:
    """The loop's run input from the parent state: the declared inputs given (an empty form
    field comes as None), defaults filled in and missing ones refused as `loopengt run`
    does, without its command-line hints."""
    from loopengt.runs.engine import prepare_inputs

    given = {k: v for k, v in values.items() if k in spec.inputs and v is not None}
    return prepare_inputs(spec, given, cli_hints=False)


def _check_input_names(spec: LoopSpec, filename: str) -> None:
    clash = sorted(RESERVED & set(spec.inputs))
    if clash:
        names = ", ".join(repr(name) for name in clash)
        raise UserInputError(
            f"{filename}: input {names}: the Studio graph uses that name itself "
            f"({', '.join(sorted(RESERVED))}); rename the input"
        )


def _identifier(name: str, fallback: str) -> str:
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    camel = "".join(w[:1].upper() + w[1:] for w in words)
    return camel if camel and not camel[0].isdigit() else fallback + camel
