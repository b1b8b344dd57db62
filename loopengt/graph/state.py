"""The state every compiled loop shares, with reducers that let parallel branches write
side by side without overwriting each other."""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from langchain_core.messages import AnyMessage, BaseMessage, BaseMessageChunk, RemoveMessage
from langgraph._internal._runnable import RunnableCallable  # the node type both APIs run
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.graph import StateGraph
from langgraph.graph.message import add_messages

# pydantic (LangGraph's JSON schemas, which Studio shows) needs typing_extensions' TypedDict
# before Python 3.12
from typing_extensions import TypedDict

from loopengt.status import SEVERITY


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    if not left:
        return dict(right or {})
    if not right:
        return left
    return {**left, **right}


def add_numbers(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Key-wise sum: counters per step, token usage."""
    out = dict(left or {})
    for key, value in (right or {}).items():
        out[key] = out.get(key, 0) + value
    return out


def merge_mapped(
    left: dict[str, dict[int, Any]] | None, right: dict[str, dict[int, Any]] | None
) -> dict[str, dict[int, Any]]:
    out = {k: dict(v) for k, v in (left or {}).items()}
    for step, items in (right or {}).items():
        out.setdefault(step, {}).update(items)
    return out


def first_set(left: Any, right: Any) -> Any:
    """Keep the first stop reason: a later branch must not hide why a run stopped."""
    return left if left is not None else right


_STATUS_RANK: dict[str | None, int] = {status: rank for rank, status in enumerate(SEVERITY)}


def gravest_status(left: str | None, right: str | None) -> str | None:
    """Parallel branches may finish differently; the run's status is the gravest of them."""
    return left if _STATUS_RANK.get(left, 0) >= _STATUS_RANK.get(right, 0) else right


def append_messages(left: list[Any], right: Any) -> list[Any]:
    """``add_messages``, with a shortcut for what our nodes write: new messages that already
    have ids are appended as they are. Anything else (ids to replace, RemoveMessage, chunks,
    dicts, tuples) goes through ``add_messages``, which converts them and adds ids."""
    if isinstance(right, list) and isinstance(left, list):
        old_ids = {m.id for m in left if isinstance(m, BaseMessage)}
        new_ids = {
            m.id
            for m in right
            if isinstance(m, BaseMessage) and not isinstance(m, BaseMessageChunk | RemoveMessage)
        }
        if (
            len(old_ids) == len(left)
            and len(new_ids) == len(right)
            and None not in new_ids
            and "" not in new_ids
            and old_ids.isdisjoint(new_ids)
        ):
            return left + right
    return add_messages(left, right)  # type: ignore[return-value]


class StartsAsNone(BinaryOperatorAggregate[Any]):
    """A reducer channel for an optional value that holds None until first written.
    LangGraph's own starts empty, and it raises and catches EmptyChannelError for an empty
    channel on every node's read and every step's output, which showed in every run's
    time (benchmarks/compile_overhead.py)."""

    __slots__ = ()

    def __init__(self, typ: Any, operator: Callable[[Any, Any], Any]) -> None:
        super().__init__(typ, operator)
        self.value = None


class LoopState(TypedDict, total=False):
    input: dict[str, Any]
    messages: Annotated[list[AnyMessage], append_messages]
    outputs: Annotated[dict[str, Any], merge_dicts]
    mapped: Annotated[dict[str, dict[int, Any]], merge_mapped]
    turns: Annotated[int, operator.add]
    visits: Annotated[dict[str, int], add_numbers]
    gate_attempts: Annotated[dict[str, int], add_numbers]
    gates: Annotated[list[dict[str, Any]], operator.add]
    feedback: Annotated[dict[str, str], merge_dicts]
    verdicts: Annotated[dict[str, Any], merge_dicts]
    errors: Annotated[list[dict[str, Any]], operator.add]
    usage: Annotated[dict[str, float], add_numbers]
    stop_reason: Annotated[str | None, StartsAsNone(str | None, first_set)]
    status: Annotated[str | None, StartsAsNone(str | None, gravest_status)]
    started_at: Annotated[float | None, StartsAsNone(float | None, first_set)]
    next_worker: str | None
    task: str | None
    active_agent: str | None
    # in the Send payload of one mapped branch only; never channels
    item: Any
    item_index: int


Update = dict[str, Any]  # what a node returns: state keys to write through their reducers


def _reducer(hint: Any) -> Callable[[Any, Any], Any] | None:
    """The reducer a LoopState annotation declares: a function, or a channel's operator."""
    if get_origin(hint) is not Annotated:
        return None
    declared = get_args(hint)[-1]
    return declared.operator if isinstance(declared, BinaryOperatorAggregate) else declared


REDUCERS = {
    key: reducer
    for key, hint in get_type_hints(LoopState, include_extras=True).items()
    if (reducer := _reducer(hint)) is not None
}


def merge_update(state: dict[str, Any], update: Update) -> dict[str, Any]:
    """``state`` with ``update`` applied through LoopState's reducers (as LangGraph would)."""
    out = dict(state)
    for key, value in update.items():
        reducer = REDUCERS.get(key)
        out[key] = reducer(out[key], value) if reducer and key in out else value
    return out


def new_usage(input_tokens: int, output_tokens: int, cost_usd: float) -> dict[str, float]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost_usd": cost_usd,
        "model_calls": 1,
    }


Graph = StateGraph[Any, Any, Any, Any]

# Every compiled graph has these channels; the others only where its pattern or the spec's
# gates use them. LangGraph does work per channel on every superstep, so unused channels
# would slow every run (benchmarks/compile_overhead.py).
CORE_CHANNELS = (
    "input",
    "messages",
    "outputs",
    "turns",
    "visits",
    "errors",
    "usage",
    "stop_reason",
    "status",
)
GATE_CHANNELS = ("gates", "gate_attempts", "feedback")
# set by the tests: every node update is checked against its graph's channels, because
# LangGraph silently drops a key that is not a channel
CHECK_WRITES_ENV = "LOOPENGT_CHECK_STATE_WRITES"


@functools.cache
def state_schema(channels: frozenset[str]) -> type:
    """LoopState cut down to ``channels`` (plus the core ones), keeping its reducers."""
    hints = get_type_hints(LoopState, include_extras=True)
    wanted = set(CORE_CHANNELS) | channels
    return TypedDict(  # type: ignore[operator,no-any-return]  # functional form, dynamic keys
        "LoopState", {key: hint for key, hint in hints.items() if key in wanted}, total=False
    )


def new_graph(channels: frozenset[str]) -> Graph:
    """A StateGraph over the core channels and ``channels``."""
    return StateGraph(state_schema(channels))


def add_node(
    graph: Graph, name: str, action: Any, *, metadata: dict[str, Any] | None = None, **kwargs: Any
) -> None:
    """Add a node with a sync and an async implementation (see `node_runnable`). The input
    schema is the graph's own: LangGraph would otherwise take it from the ``state: LoopState``
    annotation and add every LoopState channel to the graph. ``metadata`` reaches callbacks
    (the trace learns a node's agent from it)."""
    graph.add_node(
        name,
        node_runnable(action, name, set(get_type_hints(graph.state_schema))),
        input_schema=graph.state_schema,
        metadata=metadata,
        **kwargs,
    )


def node_runnable(action: Any, name: str, channels: set[str] | None = None) -> Any:
    """``action`` as LangGraph runs a node: ``action(...)`` under ``invoke``, and under
    ``ainvoke`` its ``acall`` (an agent turn awaits its model calls) or, for a plain function
    (a pass-through, a join, a router), the function itself on the event loop — LangGraph
    would hand a sync function to a worker thread, and hundreds of concurrent runs would
    queue for a handful of them."""
    sync = action
    asynchronous = getattr(action, "acall", None) or _inline(action)
    if channels is not None and os.environ.get(CHECK_WRITES_ENV):
        sync, asynchronous = checked_writes(sync, asynchronous, name, channels)
    return RunnableCallable(sync, asynchronous, name=name, trace=False)


def _inline(func: Callable[..., Any]) -> Callable[..., Any]:
    async def inline(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return inline


def add_router(graph: Graph, source: str, route: Callable[[Any], Any], ends: list[str]) -> None:
    """``graph.add_conditional_edges``, run inline under ``ainvoke`` too (`node_runnable`),
    hiding the route's ``state: LoopState`` annotation from LangGraph, which would add every
    LoopState channel to the graph."""

    def routed(state):  # type: ignore[no-untyped-def]  # no annotation: see above
        return route(state)

    path = RunnableCallable(routed, _inline(routed), name=route.__name__)
    graph.add_conditional_edges(source, path, ends)


def checked_writes(
    sync: Callable[..., Any], asynchronous: Callable[..., Any], name: str, channels: set[str]
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Both implementations of a node, failing on a write to a key that is not a channel."""

    def check(update: Any) -> Any:
        written = update.update if hasattr(update, "goto") else update
        unknown = set(written or {}) - channels if isinstance(written, dict) else set()
        if unknown:
            raise AssertionError(f"node {name!r} wrote {sorted(unknown)}: not channels")
        return update

    @functools.wraps(sync)
    def checked(*args: Any, **kwargs: Any) -> Any:
        return check(sync(*args, **kwargs))

    @functools.wraps(sync)
    async def achecked(*args: Any, **kwargs: Any) -> Any:
        return check(await asynchronous(*args, **kwargs))

    return checked, achecked
