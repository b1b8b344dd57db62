"""The spec's policy as state updates: the stops a turn makes before and after calling a
model (turn limit, total time, budget, stop conditions), the failure of a turn, and which
errors LangGraph's RetryPolicy may try again."""

from __future__ import annotations

import re
import time
from typing import Any

from langchain_core.exceptions import ModelConnectionError, ModelRateLimitError, ModelTimeoutError
from langgraph.types import RetryPolicy

from loopengt.errors import LoopengtError, UserInputError
from loopengt.graph.calls import RunTakenOver, RunTimeLimitError, StepTimeoutError
from loopengt.graph.context import CompileContext
from loopengt.graph.state import LoopState, Update, add_numbers
from loopengt.serialization import as_text
from loopengt.status import RunStatus

# ConnectionError and TimeoutError include StepTimeoutError; the Model* classes are what
# LangChain integrations (e.g. langchain-openai 1.x) raise for connection, timeout and 429
TRANSIENT = (
    ConnectionError,
    TimeoutError,
    ModelConnectionError,
    ModelTimeoutError,
    ModelRateLimitError,
)
TRANSIENT_NAMES = ("APIConnectionError", "APITimeoutError", "ConnectError", "TimeoutException")


def stop(reason: str, status: RunStatus = RunStatus.STOPPED) -> Update:
    # the value, not the enum member: checkpoints must not need our classes to load
    return {"stop_reason": reason, "status": status.value}


def failure(node: str, reason: str, *, timed_out: bool = False, bad_input: bool = False) -> Update:
    """The update of a node that cannot go on: the error is recorded and the run ends,
    ``stopped`` when a step timeout ran out (a limit of the policy), else ``failed``.
    ``bad_input``: the cause is the user's input (a replay cassette that does not match),
    which resuming would meet again: the CLI exits 2 and offers no resume."""
    record: dict[str, Any] = {"step": node, "error": reason}
    if timed_out:
        record["timed_out"] = True
    if bad_input:
        record["bad_input"] = True
    status = RunStatus.STOPPED if timed_out else RunStatus.FAILED
    return {"errors": [record], **stop(f"error: {reason}", status)}


def retry_policy(ctx: CompileContext) -> RetryPolicy:
    """The spec's `policy.retry` as LangGraph's RetryPolicy (set once for every node)."""
    retry = ctx.spec.policy.retry
    return RetryPolicy(
        initial_interval=retry.backoff_seconds,
        backoff_factor=retry.backoff_factor,
        max_interval=retry.max_backoff_seconds,
        max_attempts=retry.attempts,
        jitter=False,
        retry_on=is_transient,
    )


def is_transient(exc: Exception) -> bool:
    """Errors worth another attempt: timeouts, connection problems, 429 and 5xx — but not a
    5xx whose text says the request is invalid (the same request fails the same way)."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, LoopengtError):
        return False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        from loopengt.providers.errors import refused

        return status == 429 or (status >= 500 and not refused(exc))
    # provider SDKs without the langchain-core classes (httpx, anthropic, openai directly)
    return any(c.__name__ in TRANSIENT_NAMES for c in type(exc).__mro__)


def failed_call(exc: Exception, ctx: CompileContext, attempt: int, what: str, node: str) -> Update:
    """The update of a node whose model call failed: a transient error is re-raised while
    attempts remain, so LangGraph's RetryPolicy runs the node again after a backoff; after
    that the run ends, ``stopped`` by a step timeout and ``failed`` by anything else."""
    from loopengt.providers.errors import explain_model_error

    if isinstance(exc, RunTakenOver):  # another process drives the run now: write nothing
        raise exc
    if isinstance(exc, RunTimeLimitError):  # the policy's limit, as policy_halt words it
        return stop(str(exc))
    if is_transient(exc) and attempt < ctx.spec.policy.retry.attempts:
        raise exc
    reason = f"{what} failed after {attempt} attempt(s): {explain_model_error(exc, ctx.config)}"
    return failure(
        node,
        reason,
        timed_out=isinstance(exc, StepTimeoutError),
        bad_input=isinstance(exc, UserInputError),
    )


def started(ctx: CompileContext, state: LoopState) -> Update:
    """The run's start time, written by whichever node runs first when there is a total
    time limit (the only use of it)."""
    if state.get("started_at") or ctx.spec.policy.max_total_time_seconds is None:
        return {}
    return {"started_at": time.time()}


def policy_halt(ctx: CompileContext, state: LoopState) -> Update | None:
    """The stop a node must make before calling a model: turn limit, total time, budget."""
    policy = ctx.spec.policy
    if policy.max_turns is not None and state.get("turns", 0) >= policy.max_turns:
        return stop(f"max_turns: reached the limit of {policy.max_turns} turns")
    began = state.get("started_at")
    limit = policy.max_total_time_seconds
    if began is not None and limit is not None and time.time() - began > limit:
        return stop(f"max_total_time: the run took longer than {limit:g}s")
    return budget_stop(ctx, state.get("usage") or {})


def budget_stop(
    ctx: CompileContext, usage: dict[str, float], more: dict[str, float] | None = None
) -> Update | None:
    """The stop for a spent budget, counting ``usage`` plus ``more``."""
    budget = ctx.spec.policy.budget
    if budget.max_tokens is None and budget.max_cost_usd is None:
        return None  # the common case, checked on every step: no sum to make
    usage = add_numbers(usage, more) if more else usage
    if budget.max_tokens is not None and usage.get("total_tokens", 0) >= budget.max_tokens:
        used = int(usage.get("total_tokens", 0))
        return stop(f"budget: used {used} tokens of {budget.max_tokens}")
    if budget.max_cost_usd is not None and usage.get("cost_usd", 0) >= budget.max_cost_usd:
        return stop(f"budget: spent ${usage.get('cost_usd', 0):.4f} of ${budget.max_cost_usd}")
    return None


def stop_condition(ctx: CompileContext, step: str, output: Any) -> Update | None:
    text = None
    for cond in ctx.spec.policy.stop_conditions:
        if cond.step not in (None, step):
            continue
        text = as_text(output) if text is None else text
        hit = cond.contains in text if cond.contains is not None else False
        hit = hit or (cond.matches is not None and re.search(cond.matches, text) is not None)
        if hit:
            reason = cond.reason or f"step {step!r} output met a stop condition"
            return stop(f"stop_condition: {reason}", RunStatus.COMPLETED)
    return None


def parse_approval(answer: Any) -> tuple[bool, str]:
    """Resume values: True/False, "approve"/"reject", or {"approved": bool, "comment": str}."""
    if isinstance(answer, dict):
        approved = answer.get("approved", answer.get("approve", False))
        return bool(approved), str(answer.get("comment") or "")
    if isinstance(answer, str):
        return answer.strip().lower() in ("approve", "approved", "yes", "y", "ok"), ""
    return bool(answer), ""
