"""The node every pattern builds on: one agent doing one step, with the policy enforced
inside it — stop checks, turn limit, time limits, budget, approval, tool loop, structured
output, gate and stop conditions — and results written to the shared state."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from langchain_core.exceptions import ModelConnectionError, ModelRateLimitError, ModelTimeoutError
from langchain_core.messages import (
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, interrupt

from loopengt.errors import LoopengtError
from loopengt.graph.context import CompileContext, describe_agent, step_gate
from loopengt.graph.gates import as_text, evaluate_gate
from loopengt.graph.model_calls import ModelCalls, StepTimeoutError
from loopengt.graph.state import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_REJECTED,
    STATUS_STOPPED,
    LoopState,
    Update,
    add_numbers,
)
from loopengt.graph.structured import StructuredOutputError, structured_call
from loopengt.graph.tool_loop import run_tool_loop
from loopengt.providers.errors import explain_model_error
from loopengt.spec.models import StepSpec
from loopengt.templating import render

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


def stop(reason: str, status: str = STATUS_STOPPED) -> Update:
    return {"stop_reason": reason, "status": status}


def retry_policy(ctx: CompileContext) -> RetryPolicy:
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
    """Errors worth another attempt: timeouts, connection problems, 429 and 5xx."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, LoopengtError):
        return False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    # provider SDKs without the langchain-core classes (httpx, anthropic, openai directly)
    return any(c.__name__ in TRANSIENT_NAMES for c in type(exc).__mro__)


def started(ctx: CompileContext, state: LoopState) -> Update:
    """The run's start time, written by whichever node runs first when there is a total
    time limit (the only use of it)."""
    if state.get("started_at") or ctx.spec.policy.max_total_time_seconds is None:
        return {}
    return {"started_at": time.time()}


def failure(name: str, reason: str, status: str = STATUS_FAILED) -> Update:
    """The update of a node that cannot go on: the error is recorded and the run ends."""
    return {"errors": [{"step": name, "error": reason}], **stop(f"error: {reason}", status)}


def failed_call(
    exc: Exception, ctx: CompileContext, runtime: Runtime, what: str, node: str
) -> Update:
    """The update of a node whose model call failed: a transient error is re-raised while
    attempts remain, so LangGraph's RetryPolicy runs the node again after a backoff; after
    that the run ends, ``stopped`` by a step timeout and ``failed`` by anything else."""
    attempt = runtime.execution_info.node_attempt if runtime.execution_info else 1
    if is_transient(exc) and attempt < ctx.spec.policy.retry.attempts:
        raise exc
    reason = f"{what} failed after {attempt} attempt(s): {explain_model_error(exc)}"
    return failure(
        node, reason, STATUS_STOPPED if isinstance(exc, StepTimeoutError) else STATUS_FAILED
    )


# built once: json.dumps with options builds a new encoder on every call
INPUT_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def context_parts(ctx: CompileContext, state: LoopState) -> list[str]:
    """What every agent is told first: the goal and the run input."""
    parts = [f"Goal: {ctx.spec.goal}"]
    if state.get("input"):
        parts.append("Run input:\n" + INPUT_ENCODER.encode(state["input"]))
    return parts


def default_prompt(
    ctx: CompileContext, step: StepSpec, state: LoopState, requires: list[str]
) -> str:
    """A prompt for a step that has none: the goal, its description and the outputs of
    ``requires``, its dependencies."""
    parts = context_parts(ctx, state)
    parts.insert(1, f"Your task ({step.name}): {step.description or step.name}")
    outputs = state.get("outputs") or {}
    for dep in requires:
        if dep in outputs:
            parts.append(f"Result of step {dep!r}:\n{as_text(outputs[dep])}")
    return "\n\n".join(parts)


class StepNode:
    """Runs one step; ``variables`` adds pattern values ({{task}}, {{item}}, {{feedback}})."""

    def __init__(
        self,
        ctx: CompileContext,
        step: StepSpec,
        *,
        sink: bool = False,
        variables: Callable[[LoopState], dict[str, Any]] | None = None,
        extra_prompt: Callable[[LoopState], str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.step = step
        self.agent = ctx.agent_for_step(step)
        self.sink = sink
        self.variables = variables
        self.extra_prompt = extra_prompt
        self.gate = step_gate(ctx.spec, step)
        self.approval = next((a for a in ctx.spec.policy.approvals if a.step == step.name), None)
        self.timeout = step.timeout_seconds or ctx.spec.policy.step_timeout_seconds
        self.system = SystemMessage(describe_agent(self.agent))
        self.requires = step.requires
        self.__name__ = step.name

    def approve(self) -> Update | None:
        if self.approval is None:
            return None
        message = self.approval.message or f"Approve step {self.step.name!r}?"
        answer = interrupt({"type": "approval", "step": self.step.name, "message": message})
        approved, comment = parse_approval(answer)
        if approved:
            return None
        why = f" ({comment})" if comment else ""
        return stop(f"rejected: step {self.step.name!r} was not approved{why}", STATUS_REJECTED)

    # -- the step ----------------------------------------------------------------------------
    def messages(self, state: LoopState) -> list[BaseMessage]:
        variables = self.variables(state) if self.variables else {}
        if self.step.prompt:
            prompt = render(
                self.step.prompt,
                goal=self.ctx.spec.goal,
                inputs=state.get("input") or {},
                outputs=state.get("outputs") or {},
                variables=variables,
            )
        else:
            prompt = default_prompt(self.ctx, self.step, state, self.requires)
            for name in ("task", "item"):
                if variables.get(name) is not None:
                    prompt += f"\n\nYour {name}: {as_text(variables[name])}"
        if self.extra_prompt:
            prompt += self.extra_prompt(state)
        feedback = (state.get("feedback") or {}).get(self.step.name)
        if feedback:
            prompt += f"\n\nYour previous attempt was rejected: {feedback}\nPlease try again."
        return [self.system, HumanMessage(prompt)]

    def produce(self, calls: ModelCalls, messages: list[BaseMessage]) -> tuple[Any, list[Any]]:
        """The step's output, plus the messages to record (tool calls and results)."""
        model = self.ctx.model_for(self.agent, self.step)
        if self.step.output_schema is not None:
            value, _ = structured_call(
                calls, model, messages, self.step.output_schema, what=f"step {self.step.name!r}"
            )
            return value, [calls.replies[-1]]
        tools = self.ctx.tools_for(self.agent)
        if not tools:
            reply = calls(model, messages)
            return str(reply.text), [reply]
        return run_tool_loop(calls, model, messages, tools, self.agent.max_tool_calls)

    def __call__(self, state: LoopState, config: RunnableConfig, runtime: Runtime) -> Update:
        if state.get("stop_reason"):
            return {}
        first = started(self.ctx, state)
        halted = policy_halt(self.ctx, state) or self.approve()
        if halted:
            return {**first, **halted}
        calls = ModelCalls(config, self.timeout)
        update: Update = {**first, "turns": 1, "visits": {self.step.name: 1}}
        try:
            output, recorded = self.produce(calls, self.messages(state))
        except StructuredOutputError as exc:
            return {**update, **failure(self.step.name, str(exc)), "usage": calls.usage()}
        except Exception as exc:
            failed = failed_call(exc, self.ctx, runtime, f"step {self.step.name!r}", self.step.name)
            return {**update, **failed, "usage": calls.usage()}
        update["messages"] = [m for m in recorded if isinstance(m, BaseMessage)]
        try:
            gate_update, passed = self.check_gate(state, output, calls)
        except Exception as exc:  # an llm_judge's model call fails like the step's own
            what = f"gate on step {self.step.name!r}"
            failed = failed_call(exc, self.ctx, runtime, what, self.step.name)
            return {**update, **failed, "usage": calls.usage()}
        update.update(gate_update)
        update["usage"] = calls.usage()  # after the gate: a judge's calls count too
        if not passed:
            return update
        update["outputs"] = {self.step.name: output}
        if self.gate is not None and (state.get("feedback") or {}).get(self.step.name):
            update["feedback"] = {self.step.name: ""}
        halted = stop_condition(self.ctx, self.step.name, output)
        halted = halted or budget_stop(self.ctx, state.get("usage") or {}, update["usage"])
        if halted:
            update.update(halted)
        elif self.sink:
            update["status"] = STATUS_COMPLETED
        return update

    def check_gate(self, state: LoopState, output: Any, calls: ModelCalls) -> tuple[Update, bool]:
        """(state update, passed): a failed gate asks for another attempt or stops the run."""
        if self.gate is None:
            return {}, True
        attempt = (state.get("gate_attempts") or {}).get(self.step.name, 0) + 1
        judge_agent = self.ctx.spec.agent(self.gate.judge) if self.gate.judge else self.agent
        result = evaluate_gate(
            self.gate,
            output,
            step=self.step.name,
            judge=lambda: self.ctx.model_for(judge_agent),
            invoke=calls,
        )
        record = result.record(self.step.name, self.gate.kind, attempt)
        if result.passed:
            return {"gates": [record]}, True
        # the rejected output is kept: successors wait on the gate, and a run that stops
        # before the next attempt still has what was made
        update: Update = {
            "gates": [record],
            "gate_attempts": {self.step.name: 1},
            "outputs": {self.step.name: output},
        }
        if self.gate.on_fail == "retry" and attempt < self.gate.max_attempts:
            update["feedback"] = {self.step.name: result.reason or "the gate rejected it"}
            return update, False
        why = f"gate on step {self.step.name!r} failed after {attempt} attempt(s): {result.reason}"
        return {**update, **stop(why)}, False


def policy_halt(ctx: CompileContext, state: LoopState) -> Update | None:
    """The stop a node must make before calling a model: turn limit, total time, budget."""
    policy = ctx.spec.policy
    if policy.max_turns is not None and state.get("turns", 0) >= policy.max_turns:
        return stop(f"max_turns: reached the limit of {policy.max_turns} turns")
    started = state.get("started_at")
    limit = policy.max_total_time_seconds
    if started is not None and limit is not None and time.time() - started > limit:
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
            return stop(f"stop_condition: {reason}", STATUS_COMPLETED)
    return None


def parse_approval(answer: Any) -> tuple[bool, str]:
    """Resume values: True/False, "approve"/"reject", or {"approved": bool, "comment": str}."""
    if isinstance(answer, dict):
        approved = answer.get("approved", answer.get("approve", False))
        return bool(approved), str(answer.get("comment") or "")
    if isinstance(answer, str):
        return answer.strip().lower() in ("approve", "approved", "yes", "y", "ok"), ""
    return bool(answer), ""


def passed_node(name: str) -> str:
    """The pass-through node after a gated step: successors wait on it, so a rejected attempt
    never triggers them."""
    return f"{name}__passed"


def gate_router(step: str, on_pass: str) -> Callable[[LoopState], str]:
    def route(state: LoopState) -> str:
        if state.get("stop_reason"):
            return "__end__"
        if (state.get("feedback") or {}).get(step):
            return step
        return on_pass

    route.__name__ = f"after_{step}"
    return route


def noop(state: LoopState) -> Update:
    return {}
