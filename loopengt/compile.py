"""`compile_spec`: a LoopSpec (or its path) -> a compiled LangGraph graph."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from langgraph.graph.state import CompiledStateGraph

from loopengt.config import Config
from loopengt.graph.context import CompileContext, ModelsArg
from loopengt.graph.state import Graph
from loopengt.spec.loader import check_spec, load_spec
from loopengt.spec.models import LoopSpec

if TYPE_CHECKING:
    from loopengt.providers.cassette import Cassette


def compile_spec(
    spec_or_path: LoopSpec | str | os.PathLike[str],
    *,
    checkpointer: Any = None,
    store: Any = None,
    models: ModelsArg = None,
    check_models: bool = True,
    record: str | os.PathLike[str] | Cassette | None = None,
    replay: str | os.PathLike[str] | None = None,
    config: Config | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile a LoopSpec onto a LangGraph ``StateGraph``.

    ``models`` is one chat model for every agent or a mapping from agent name to model;
    agents it leaves out use their ``model:`` string. Invoke the result with
    ``{"input": {...}}``; the final state holds ``outputs`` (per step), ``status``,
    ``stop_reason``, ``turns`` and ``usage``. With ``check_models`` (the default) a
    missing or misconfigured model fails here rather than at the first step.

    ``record`` saves every model call to that YAML cassette; ``replay`` answers every call
    from one, with no model resolved or called (``models`` is then unused).

    ``config`` is the project's configuration (`Config.load(root)`); by default the one in
    the working directory's `.loopengt/config.toml`.

    Every node runs under both APIs: ``invoke``/``stream`` make model calls synchronously,
    ``ainvoke``/``astream`` await them, so one event loop can drive many runs at once.
    """
    if isinstance(spec_or_path, LoopSpec):
        # a spec made or changed in Python has had no cross-reference or role checks: the
        # compilers rely on every rule `loopengt validate` knows (0.2 ms)
        spec = check_spec(spec_or_path)
    else:
        spec = load_spec(spec_or_path)
    cassette = None
    if record is not None or replay is not None:
        from loopengt.providers.cassette import open_cassette

        cassette = open_cassette(spec.name, record, replay)
    ctx = CompileContext(spec, models, cassette, config or Config.load())
    if check_models:
        ctx.check_models()
    if spec.tools:
        from loopengt.tools import check_functions

        check_functions(spec.tools)
    module = importlib.import_module(f"loopengt.compilers.{spec.pattern}")
    builder: Graph = module.build(ctx)
    graph = builder.compile(checkpointer=checkpointer, store=store, name=spec.name)
    return graph.with_config(
        recursion_limit=ctx.recursion_limit(), max_concurrency=ctx.max_concurrency()
    )
