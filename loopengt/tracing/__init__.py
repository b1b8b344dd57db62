"""Run traces: recorded while a loop runs (`TraceRecorder`), rendered and exported after.

`TraceRecorder` pulls in LangChain, so it is imported on first use: reading a trace
(`load_trace`, the exports, the tree) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopengt.tracing.events import Trace

if TYPE_CHECKING:
    from loopengt.tracing.recorder import TraceRecorder, node_agents

__all__ = ["Trace", "TraceRecorder", "node_agents"]


def __getattr__(name: str) -> Any:
    if name in ("TraceRecorder", "node_agents"):
        from loopengt.tracing import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'loopengt.tracing' has no attribute {name!r}")
