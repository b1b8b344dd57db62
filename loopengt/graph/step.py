"""A step: the agent turn that runs one step of the spec — its prompt, an approval before
it, its output (text, structured, or after a tool loop), its gate, and the stops its output
can trigger (stop conditions, budget)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.types import interrupt

from loopengt.graph.calls import Calls, Work
from loopengt.graph.context import CompileContext, step_gate
from loopengt.graph.gates import evaluate_gate, load_verifier
from loopengt.graph.policy import (
    budget_stop,
    failed_call,
    parse_approval,
    stop,
    stop_condition,
)
from loopengt.graph.prompts import default_prompt, describe_agent
from loopengt.graph.state import LoopState, Update
from loopengt.graph.structured import structured_call
from loopengt.graph.tool_loop import tool_loop
from loopengt.graph.turn import AgentTurn
from loopengt.spec.models import StepSpec
from loopengt.status import RunStatus
from loopengt.templating import render


@dataclass
class Attempt:
    """One attempt at a step: its output and what its gate made of it."""

    output: Any
    recorded: list[BaseMessage]
    gate_update: Update
    passed: bool


class StepTurn(AgentTurn):
    """Runs one step; ``variables`` adds pattern values ({{task}}, {{item}}, {{feedback}}),
    ``extra_prompt`` text after the prompt; a ``sink`` step completes the run."""

    def __init__(
        self,
        ctx: CompileContext,
        step: StepSpec,
        *,
        node: str | None = None,
        sink: bool = False,
        variables: Callable[[LoopState], dict[str, Any]] | None = None,
        extra_prompt: Callable[[LoopState], str] | None = None,
    ) -> None:
        timeout = step.timeout_seconds or ctx.spec.policy.step_timeout_seconds
        node = node or step.name
        agent = ctx.agent_for_step(step)
        super().__init__(ctx, agent, node, what=f"step {step.name!r}", timeout=timeout)
        self.step = step
        self.name = step.name
        self.sink = sink
        self.variables = variables
        self.extra_prompt = extra_prompt
        self.gate = step_gate(ctx.spec, step)
        # a plugin verifier loads when the graph compiles: a missing one fails before any call
        self.verifier = (
            load_verifier(self.gate.verifier)
            if self.gate is not None and self.gate.verifier is not None
            else None
        )
        self.approval = next((a for a in ctx.spec.policy.approvals if a.step == step.name), None)
        self.system = SystemMessage(describe_agent(agent))

    @property
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata, "loopengt_step": self.step.name}

    def halt(self, state: LoopState) -> Update | None:
        """An approval the step waits for (`interrupt`); a refusal stops the run."""
        if self.approval is None:
            return None
        message = self.approval.message or f"Approve step {self.step.name!r}?"
        answer = interrupt({"type": "approval", "step": self.step.name, "message": message})
        approved, comment = parse_approval(answer)
        if approved:
            return None
        why = f" ({comment})" if comment else ""
        return stop(f"rejected: step {self.step.name!r} was not approved{why}", RunStatus.REJECTED)

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
            prompt = default_prompt(self.ctx.spec, self.step, state, variables)
        if self.extra_prompt:
            prompt += self.extra_prompt(state)
        feedback = (state.get("feedback") or {}).get(self.step.name)
        if feedback:
            prompt += f"\n\nYour previous attempt was rejected: {feedback}\nPlease try again."
        return [self.system, HumanMessage(prompt)]

    def work(self, state: LoopState, calls: Calls) -> Work[Attempt]:
        """The step's output, the messages to record (tool calls and results), and what its
        gate said."""
        model = self.ctx.model_for(self.agent, self.step)
        messages = self.messages(state)
        if self.step.output_schema is not None:
            what = f"step {self.step.name!r}"
            output = yield from structured_call(
                calls, model, messages, self.step.output_schema, what=what
            )
            recorded: list[BaseMessage] = [calls.replies[-1]]
        elif self.agent.has_tools:
            tools = self.ctx.tools_for(self.agent)
            outcome = yield from tool_loop(calls, model, messages, tools, self.agent.max_tool_calls)
            output, recorded = outcome.last, outcome.recorded
        else:  # the common case, on every step: one call, no tool loop to set up
            reply = yield calls.model(model, messages)
            output, recorded = str(reply.text), [reply]
        gate_update, passed = yield from self.check_gate(state, output, calls)
        return Attempt(output, recorded, gate_update, passed)

    def done(self, state: LoopState, update: Update, outcome: Attempt, calls: Calls) -> Update:
        output, passed = outcome.output, outcome.passed
        update["messages"] = outcome.recorded
        update.update(outcome.gate_update)
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
            update["status"] = RunStatus.COMPLETED.value
        return update

    def check_gate(self, state: LoopState, output: Any, calls: Calls) -> Work[tuple[Update, bool]]:
        """(state update, passed): a failed gate asks for another attempt or stops the run."""
        if self.gate is None:
            return {}, True
        attempt = (state.get("gate_attempts") or {}).get(self.step.name, 0) + 1
        judge_agent = self.ctx.spec.agent(self.gate.judge) if self.gate.judge else self.agent
        try:
            result = yield from evaluate_gate(
                self.gate,
                output,
                step=self.step.name,
                judge=self.ctx.model_for(judge_agent),
                calls=calls,
                goal=self.ctx.spec.goal,
                verifier=self.verifier,
            )
        except Exception as exc:  # an llm_judge's model call fails like the step's own
            what = f"gate on step {self.step.name!r}"
            return failed_call(exc, self.ctx, calls.attempt, what, self.name), False
        record = result.record(self.step.name, self.gate.kind, attempt)
        if result.passed:
            return {"gates": [record]}, True
        # the rejected output is kept: successors wait on the gate, and a run that stops
        # before the next attempt still has what was made
        failed: Update = {
            "gates": [record],
            "gate_attempts": {self.step.name: 1},
            "outputs": {self.step.name: output},
        }
        if self.gate.on_fail == "retry" and attempt < self.gate.max_attempts:
            failed["feedback"] = {self.step.name: result.reason or "the gate rejected it"}
            return failed, False
        why = f"gate on step {self.step.name!r} failed after {attempt} attempt(s): {result.reason}"
        return {**failed, **stop(why)}, False
