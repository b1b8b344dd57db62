"""The state every compiled loop shares, with reducers that let parallel branches write
side by side without overwriting each other."""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from langchain_core.messages import AnyMessage, BaseMessage, BaseMessageChunk, RemoveMessage
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.graph import StateGraph
from langgraph.graph.message import add_messages

# pydantic (LangGraph's JSON schemas, which Studio shows) needs typing_extensions' TypedDict
# before Python 3.12
from typing_extensions import TypedDict

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_STOPPED = "stopped"  # halted by a policy limit
STATUS_FAILED = "failed"
STATUS_REJECTED = "rejected"  # an approval was refused


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


_STATUS_RANK = {
    None: 0,
    STATUS_RUNNING: 1,
    STATUS_COMPLETED: 2,
    STATUS_STOPPED: 3,
    STATUS_FAILED: 4,
    STATUS_REJECTED: 5,
}


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


def add_node(graph: Graph, name: str, action: Any, **kwargs: Any) -> None:
    """``graph.add_node`` for our callable node objects, which LangGraph's typed overloads
    (written for plain functions) do not describe. The input schema is the graph's own:
    LangGraph would otherwise take it from the ``state: LoopState`` annotation and add every
    LoopState channel to the graph."""
    if os.environ.get(CHECK_WRITES_ENV):
        action = checked_writes(action, name, set(get_type_hints(graph.state_schema)))
    graph.add_node(name, action, input_schema=graph.state_schema, **kwargs)


def add_router(graph: Graph, source: str, route: Callable[[Any], Any], ends: list[str]) -> None:
    """``graph.add_conditional_edges``, hiding the route's ``state: LoopState`` annotation
    from LangGraph, which would add every LoopState channel to the graph."""

    def routed(state: Any) -> Any:
        return route(state)

    routed.__name__ = route.__name__
    graph.add_conditional_edges(source, routed, ends)


def checked_writes(action: Any, name: str, channels: set[str]) -> Any:
    @functools.wraps(action)
    def checked(*args: Any, **kwargs: Any) -> Any:
        update = action(*args, **kwargs)
        written = update.update if hasattr(update, "goto") else update
        unknown = set(written or {}) - channels if isinstance(written, dict) else set()
        if unknown:
            raise AssertionError(f"node {name!r} wrote {sorted(unknown)}: not channels")
        return update

    return checked
