"""supervisor_worker: a supervisor node routes (structured output) to one worker at a time via
``Command(goto=…)``; every worker reports back to the supervisor, until it answers FINISH or
a limit is hit.

Node names are agent names: the supervisor agent's node and one node per worker agent. A
worker runs the spec's step for that agent (its prompt may use ``{{task}}``), or a step made
from the agent's description; its output is stored under that step's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START
from langgraph.types import Command

from loopengt.graph.calls import Calls, Work
from loopengt.graph.context import CompileContext
from loopengt.graph.gates import gate_router
from loopengt.graph.policy import stop
from loopengt.graph.prompts import context_parts, describe_agent
from loopengt.graph.state import Graph, LoopState, Update, add_router
from loopengt.graph.step import StepTurn
from loopengt.graph.structured import structured_call
from loopengt.graph.turn import AgentTurn, Result
from loopengt.graph.wiring import add_turn
from loopengt.serialization import as_text
from loopengt.spec.models import AgentRole, StepSpec
from loopengt.spec.roles import step_agent, supervisor_roles
from loopengt.status import RunStatus

FINISH = "FINISH"
TASK_MAX_LENGTH = 500

SUPERVISOR_RULES = (
    "You are the supervisor of a team. Each turn, pick the ONE worker who should act next and "
    "give them a short, concrete task, or answer FINISH when the goal is met by the results "
    "so far. Do not do the work yourself."
)


def routing_schema(workers: tuple[str, ...], heard: tuple[str, ...] = ()) -> dict[str, Any]:
    """The supervisor's answer: who acts next, and their task."""
    return {
        "type": "object",
        "properties": {
            "next": {"enum": routing_choices(workers, heard)},
            "task": {"type": "string", "maxLength": TASK_MAX_LENGTH},
        },
        "required": ["next"],
    }


def routing_choices(workers: tuple[str, ...], heard: tuple[str, ...]) -> list[str]:
    """Listed as the team's state suggests: workers not heard from yet, then FINISH, then
    those who already reported — the order a model reads them in, and the order the shipped
    test model (which takes the first) works in. FINISH is not offered before any worker
    has reported: the supervisor does no work itself, so the run would end with nothing."""
    fresh = [w for w in workers if w not in heard]
    if not heard:
        return fresh
    return [*fresh, FINISH, *(w for w in workers if w in heard)]


def worker_step(ctx: CompileContext, worker: str) -> StepSpec:
    """The spec's (first) step run by this worker, else one made from the agent's role."""
    for step in ctx.spec.steps:
        if step_agent(ctx.spec, step.name) == worker:
            return step
    agent = ctx.spec.agent(worker)
    return StepSpec(name=worker, agent=worker, description=agent.description)


class SupervisorTurn(AgentTurn):
    """Decides who works next; every policy stop is made here before the model is called."""

    def __init__(self, ctx: CompileContext, agent: AgentRole, workers: dict[str, StepSpec]):
        timeout = ctx.spec.policy.step_timeout_seconds
        super().__init__(ctx, agent, agent.name, what=f"supervisor {agent.name!r}", timeout=timeout)
        self.workers = workers  # worker agent -> the step it runs
        block = ctx.spec.supervisor
        self.max_decisions = block.max_turns if block else None

    def own_limit(self, state: LoopState) -> Update | None:
        made = (state.get("visits") or {}).get(self.name, 0)
        if self.max_decisions is not None and made >= self.max_decisions:
            return stop(
                f"max_turns: the supervisor reached its limit of {self.max_decisions} decisions"
            )
        return None

    def messages(self, state: LoopState) -> list[BaseMessage]:
        parts = context_parts(self.ctx.spec, state)
        lines = []
        for name, step in self.workers.items():
            agent = self.ctx.spec.agent(name)
            line = f"- {name}: {agent.description or 'no description'}"
            if agent.capabilities:
                line += f" (capabilities: {', '.join(agent.capabilities)})"
            if step.description and step.description != agent.description:
                line += f"; their step {step.name!r}: {step.description}"
            lines.append(line)
        parts.append("Workers:\n" + "\n".join(lines))
        outputs = state.get("outputs") or {}
        steps = {step.name: worker for worker, step in self.workers.items()}
        # outputs keep the order in which they were first produced
        done = [
            f"[{steps[name]} / {name}]\n{as_text(value)}"
            for name, value in outputs.items()
            if name in steps
        ]
        parts.append("Results so far:\n" + ("\n\n".join(done) if done else "(none yet)"))
        choices = ", ".join(routing_choices(tuple(self.workers), self.heard(state)))
        parts.append(f"Who acts next? Answer with 'next' (one of: {choices}) and a 'task'.")
        system = describe_agent(self.agent) + "\n\n" + SUPERVISOR_RULES
        return [SystemMessage(system), HumanMessage("\n\n".join(parts))]

    def heard(self, state: LoopState) -> tuple[str, ...]:
        """The workers whose step has an output."""
        outputs = state.get("outputs") or {}
        return tuple(w for w, step in self.workers.items() if step.name in outputs)

    def work(self, state: LoopState, calls: Calls) -> Work[Any]:
        model = self.ctx.model_for(self.agent)
        messages = self.messages(state)
        schema = routing_schema(tuple(self.workers), self.heard(state))
        return (
            yield from structured_call(calls, model, messages, schema, what="supervisor routing")
        )

    def done(self, state: LoopState, update: Update, outcome: Any, calls: Calls) -> Result:
        update["usage"] = calls.usage()
        target = outcome["next"]
        if target == FINISH:
            return Command(goto=END, update={**update, "status": RunStatus.COMPLETED.value})
        task = outcome.get("task") or None
        return Command(goto=target, update={**update, "next_worker": target, "task": task})

    def ended(self, update: Update) -> Result:
        return Command(goto=END, update=update)


def other_results(step: StepSpec, steps: list[str]) -> Callable[[LoopState], str]:
    """For a worker without its own prompt: what the other workers produced so far, since the
    supervisor's routing (not depends_on) decides what a worker builds on."""
    others = [s for s in steps if s != step.name and s not in step.requires]

    def extra(state: LoopState) -> str:
        outputs = state.get("outputs") or {}
        done = [f"Result of step {s!r}:\n{as_text(outputs[s])}" for s in others if s in outputs]
        return "\n\n" + "\n\n".join(done) if done else ""

    return extra


def build(ctx: CompileContext) -> Graph:
    roles = supervisor_roles(ctx.spec)
    workers = {worker: worker_step(ctx, worker) for worker in roles.workers}
    graph = ctx.new_graph("next_worker", "task", "feedback")
    supervisor = SupervisorTurn(ctx, ctx.spec.agent(roles.supervisor), workers)
    # destinations: Command routing is dynamic, so tell LangGraph (and the mermaid drawing)
    add_turn(graph, supervisor, destinations=(*workers, END))
    graph.add_edge(START, roles.supervisor)
    for worker, step in workers.items():
        extra = None if step.prompt else other_results(step, [s.name for s in workers.values()])
        turn = StepTurn(
            ctx, step, node=worker, variables=lambda s: {"task": s.get("task")}, extra_prompt=extra
        )
        add_turn(graph, turn)
        if turn.gate is None:
            graph.add_edge(worker, roles.supervisor)
        else:
            route = gate_router(worker, step.name, roles.supervisor)
            add_router(graph, worker, route, [worker, roles.supervisor, END])
    return graph
