"""loopengt: describe an agent loop in YAML, compile it onto LangGraph, run it durably."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from loopengt.compile import compile_spec
    from loopengt.spec import LoopSpec, SpecError, load_spec

__all__ = ["LoopSpec", "SpecError", "__version__", "compile_spec", "load_spec"]

_LAZY = {
    "compile_spec": "loopengt.compile",
    "LoopSpec": "loopengt.spec",
    "SpecError": "loopengt.spec",
    "load_spec": "loopengt.spec",
}


def __getattr__(name: str) -> Any:
    # LangGraph loads only when a graph is compiled, keeping `loopengt --help` fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loopengt' has no attribute {name!r}")
