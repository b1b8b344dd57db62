"""Run traces: a run's event stream (`RunEvents`), recorded while it runs (`TraceRecorder`),
rendered and exported after.

The stream and the recorder pull in LangChain, so they are imported on first use: reading a
trace (`load_trace`, the exports, the tree) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopengt.tracing.events import EventKind, Trace

if TYPE_CHECKING:
    from loopengt.tracing.recorder import TraceRecorder
    from loopengt.tracing.stream import RunEvent, RunEvents

__all__ = ["EventKind", "RunEvent", "RunEvents", "Trace", "TraceRecorder"]

_LAZY = {
    "TraceRecorder": "loopengt.tracing.recorder",
    "RunEvent": "loopengt.tracing.stream",
    "RunEvents": "loopengt.tracing.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loopengt.tracing' has no attribute {name!r}")
