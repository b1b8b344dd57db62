"""Verification gates: decide whether a step's output is good enough to go on."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END

from loopengt.errors import UserInputError
from loopengt.evals.judge import judge as judge_work
from loopengt.graph.calls import Calls, Work
from loopengt.graph.structured import check
from loopengt.serialization import as_text
from loopengt.spec.models import GateSpec

Verifier = Callable[..., Any]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str

    def record(self, step: str, kind: str, attempt: int) -> dict[str, Any]:
        return {
            "step": step,
            "kind": kind,
            "passed": self.passed,
            "reason": self.reason,
            "attempt": attempt,
        }


def load_verifier(name: str) -> Verifier:
    """A verifier by plugin name (entry point group `loopengt.verifiers`) or 'module:attr'."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            func = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UserInputError(f"verifier {name!r} cannot be imported: {exc}") from None
        return func  # type: ignore[no-any-return]  # any callable object is accepted
    from loopengt import plugins

    verifier = plugins.find("verifiers", name)
    if not callable(verifier):
        raise UserInputError(f"verifier {name!r} is a {type(verifier).__name__}, not a callable")
    return verifier  # type: ignore[no-any-return]  # any callable object is accepted


def run_verifier(verifier: Verifier, output: Any, step: str) -> GateResult:
    """A verifier returns a bool, or (bool, reason), or a dict with pass/reason."""
    result = verifier(output, step=step)
    if isinstance(result, tuple):
        return GateResult(bool(result[0]), str(result[1]) if len(result) > 1 else "")
    if isinstance(result, dict):
        return GateResult(bool(result.get("pass")), str(result.get("reason", "")))
    return GateResult(bool(result), "" if result else "rejected by verifier")


def evaluate_gate(
    gate: GateSpec,
    output: Any,
    *,
    step: str,
    judge: BaseChatModel,
    calls: Calls,
    goal: str | None = None,
    verifier: Verifier | None = None,
) -> Work[GateResult]:
    """Whether ``output`` passes ``gate``; a generator, since an `llm_judge` gate calls
    ``judge`` through the turn's ``calls``. ``verifier``: a `verifier` gate's callable, which
    the step loads when the graph compiles (`load_verifier`)."""
    text = as_text(output)
    if gate.kind == "regex":
        assert gate.pattern is not None
        if re.search(gate.pattern, text):
            return GateResult(True, "")
        return GateResult(False, f"output does not match /{gate.pattern}/")
    if gate.kind == "json_schema":
        assert gate.json_schema is not None
        try:
            value = output if not isinstance(output, str) else json.loads(output)
            check(value, gate.json_schema)
        except (ValueError, json.JSONDecodeError) as exc:
            return GateResult(False, f"output fails the JSON Schema: {exc}")
        return GateResult(True, "")
    if gate.kind == "llm_judge":
        assert gate.criteria is not None
        verdict = yield from judge_work(
            calls,
            judge,
            key=f"{step} gate",
            criterion=gate.criteria,
            inputs={"step": step, "goal": goal} if goal else {"step": step},
            outputs=text,
        )
        return GateResult(verdict.passed, verdict.comment)
    assert verifier is not None, "a verifier gate's callable is loaded at compile time"
    return run_verifier(verifier, output, step)


# -- the gate loop in the graph ------------------------------------------------------------------


def passed_node(name: str) -> str:
    """The pass-through node after a gated step: successors wait on it, so a rejected attempt
    never triggers them."""
    return f"{name}__passed"


def gate_router(node: str, step: str, on_pass: str) -> Callable[[Any], str]:
    """After gated ``node`` (running ``step``): again while its gate asks for another
    attempt (feedback is set), the end once the run stopped, else ``on_pass``."""

    def route(state: Any) -> str:
        if state.get("stop_reason"):
            return END
        if (state.get("feedback") or {}).get(step):
            return node
        return on_pass

    route.__name__ = f"after_{node}"
    return route
