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
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Command

from loopengt.graph.context import CompileContext, describe_agent
from loopengt.graph.gates import as_text
from loopengt.graph.model_calls import ModelCalls
from loopengt.graph.nodes import (
    StepNode,
    context_parts,
    failed_call,
    failure,
    policy_halt,
    retry_policy,
    started,
    stop,
)
from loopengt.graph.state import (
    STATUS_COMPLETED,
    Graph,
    LoopState,
    Update,
    add_node,
    add_router,
    new_graph,
)
from loopengt.graph.structured import StructuredOutputError, structured_call
from loopengt.spec.models import AgentRole, StepSpec
from loopengt.spec.roles import step_agent, supervisor_roles

FINISH = "FINISH"
TASK_MAX_LENGTH = 500

SUPERVISOR_RULES = (
    "You are the supervisor of a team. Each turn, pick the ONE worker who should act next and "
    "give them a short, concrete task, or answer FINISH when the goal is met by the results "
    "so far. Do not do the work yourself."
)


def routing_schema(workers: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "next": {"enum": [*workers, FINISH]},
            "task": {"type": "string", "maxLength": TASK_MAX_LENGTH},
        },
        "required": ["next"],
    }


def worker_step(ctx: CompileContext, worker: str) -> StepSpec:
    """The spec's (first) step run by this worker, else one made from the agent's role."""
    for step in ctx.spec.steps:
        if step_agent(ctx.spec, step.name) == worker:
            return step
    agent = ctx.spec.agent(worker)
    return StepSpec(name=worker, agent=worker, description=agent.description)


class SupervisorNode:
    """Decides who works next; every policy stop is made here before the model is called."""

    def __init__(self, ctx: CompileContext, agent: AgentRole, workers: dict[str, StepSpec]):
        self.ctx = ctx
        self.agent = agent
        self.workers = workers  # worker agent -> the step it runs
        self.schema = routing_schema(tuple(workers))
        block = ctx.spec.supervisor
        self.max_decisions = block.max_turns if block else None
        self.timeout = ctx.spec.policy.step_timeout_seconds
        self.__name__ = agent.name

    def decisions_limit(self, state: LoopState) -> Update | None:
        made = (state.get("visits") or {}).get(self.agent.name, 0)
        if self.max_decisions is not None and made >= self.max_decisions:
            return stop(
                f"max_turns: the supervisor reached its limit of {self.max_decisions} decisions"
            )
        return None

    def messages(self, state: LoopState) -> list[BaseMessage]:
        parts = context_parts(self.ctx, state)
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
        choices = ", ".join([*self.workers, FINISH])
        parts.append(f"Who acts next? Answer with 'next' (one of: {choices}) and a 'task'.")
        system = describe_agent(self.agent) + "\n\n" + SUPERVISOR_RULES
        return [SystemMessage(system), HumanMessage("\n\n".join(parts))]

    def __call__(self, state: LoopState, config: RunnableConfig, runtime: Runtime) -> Command[Any]:
        if state.get("stop_reason"):
            return Command(goto=END)
        first = started(self.ctx, state)
        halted = policy_halt(self.ctx, state) or self.decisions_limit(state)
        if halted:
            return Command(goto=END, update={**first, **halted})
        calls = ModelCalls(config, self.timeout)
        update: Update = {**first, "turns": 1, "visits": {self.agent.name: 1}}
        model = self.ctx.model_for(self.agent)
        try:
            decision, _ = structured_call(
                calls, model, self.messages(state), self.schema, what="supervisor routing"
            )
        except StructuredOutputError as exc:
            failed = failure(self.agent.name, str(exc))
            return Command(goto=END, update={**update, **failed, "usage": calls.usage()})
        except Exception as exc:
            what = f"supervisor {self.agent.name!r}"
            failed = failed_call(exc, self.ctx, runtime, what, self.agent.name)
            return Command(goto=END, update={**update, **failed, "usage": calls.usage()})
        update["usage"] = calls.usage()
        target = decision["next"]
        if target == FINISH:
            return Command(goto=END, update={**update, "status": STATUS_COMPLETED})
        task = decision.get("task") or None
        return Command(goto=target, update={**update, "next_worker": target, "task": task})


def other_results(step: StepSpec, steps: list[str]) -> Callable[[LoopState], str]:
    """For a worker without its own prompt: what the other workers produced so far, since the
    supervisor's routing (not depends_on) decides what a worker builds on."""
    others = [s for s in steps if s != step.name and s not in step.requires]

    def extra(state: LoopState) -> str:
        outputs = state.get("outputs") or {}
        done = [f"Result of step {s!r}:\n{as_text(outputs[s])}" for s in others if s in outputs]
        return "\n\n" + "\n\n".join(done) if done else ""

    return extra


def after_gated_worker(worker: str, step: str, supervisor: str) -> Callable[[LoopState], str]:
    """A gated worker retries itself until its gate passes, then reports to the supervisor."""

    def route(state: LoopState) -> str:
        if state.get("stop_reason"):
            return END
        return worker if (state.get("feedback") or {}).get(step) else supervisor

    route.__name__ = f"after_{worker}"
    return route


def build(ctx: CompileContext) -> Graph:
    roles = supervisor_roles(ctx.spec)
    workers = {worker: worker_step(ctx, worker) for worker in roles.workers}
    graph = new_graph(ctx.channels("next_worker", "task", "feedback"))
    supervisor = SupervisorNode(ctx, ctx.spec.agent(roles.supervisor), workers)
    # destinations: Command routing is dynamic, so tell LangGraph (and the mermaid drawing)
    add_node(
        graph,
        roles.supervisor,
        supervisor,
        retry_policy=retry_policy(ctx),
        destinations=(*workers, END),
    )
    graph.add_edge(START, roles.supervisor)
    for worker, step in workers.items():
        extra = None if step.prompt else other_results(step, [s.name for s in workers.values()])
        node = StepNode(ctx, step, variables=lambda s: {"task": s.get("task")}, extra_prompt=extra)
        add_node(graph, worker, node, retry_policy=retry_policy(ctx))
        if node.gate is None:
            graph.add_edge(worker, roles.supervisor)
        else:
            route = after_gated_worker(worker, step.name, roles.supervisor)
            add_router(graph, worker, route, [worker, roles.supervisor, END])
    return graph
