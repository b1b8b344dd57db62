"""The agent turn: one agent acting at one node of the graph, with the policy enforced around
its model calls. Every node that calls a model is one — a step, a supervisor's decision, a
handoff agent's activation — so a policy is added here once and holds for every pattern.

A turn, in order:

1. nothing if the run already stopped (a node reached after a stop did no work);
2. the run's start time, when a total time limit needs it;
3. the stops a turn makes before calling a model: the pattern's own limit (the supervisor's
   decisions), the policy's turn limit, total time and budget, then the pattern's halt (an
   approval);
4. the work: model calls (with the step timeout, structured-output repair, the tool loop);
   a failed call is retried by LangGraph's RetryPolicy while attempts remain, then ends the
   run with the reason;
5. the result, written to the state with the turn's token usage.

The turn is a generator of calls (`loopengt.graph.calls`): the same code runs under
LangGraph's sync and async APIs, with `__call__` and `acall` as the node's two
implementations.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Command

from loopengt.graph.calls import Calls, Work, adrive, drive
from loopengt.graph.context import CompileContext
from loopengt.graph.context_budget import ContextBudget
from loopengt.graph.policy import failed_call, failure, policy_halt, started
from loopengt.graph.state import LoopState, Update
from loopengt.graph.structured import StructuredOutputError
from loopengt.spec.models import AgentRole

Result = Update | Command[Any]


class AgentTurn:
    """One agent's turn at the node ``node``; the patterns configure it by overriding
    `halt`, `work`, `done` and `ended`."""

    def __init__(
        self,
        ctx: CompileContext,
        agent: AgentRole,
        node: str,
        *,
        what: str,
        timeout: float | None,
    ) -> None:
        self.ctx = ctx
        self.agent = agent
        self.node = node
        self.name = node  # what visits and errors are recorded under (a step: its name)
        self.what = what  # how errors name this turn: "step 'draft'", "supervisor 'boss'"
        self.timeout = timeout
        self.prices = ctx.config.prices
        self.budget = context_budget(ctx, agent)
        self.__name__ = node

    @property
    def metadata(self) -> dict[str, Any]:
        """Node metadata LangGraph passes to callbacks: the trace and progress display
        learn who acted from it."""
        return {"loopengt_agent": self.agent.name}

    # -- what a pattern configures ---------------------------------------------------------------
    def own_limit(self, state: LoopState) -> Update | None:
        """The pattern's own limit, checked before the policy's: when both are reached at
        once, the stop names the narrower one (the supervisor's decisions)."""
        return None

    def halt(self, state: LoopState) -> Update | None:
        """The pattern's own stop before any model call (after the policy's)."""
        return None

    def work(self, state: LoopState, calls: Calls) -> Work[Any]:
        """The model and tool calls of the turn; returns what `done` turns into state."""
        raise NotImplementedError

    def done(self, state: LoopState, update: Update, outcome: Any, calls: Calls) -> Result:
        """The turn's result from ``outcome``; ``update`` holds its counters so far."""
        raise NotImplementedError

    def ended(self, update: Update) -> Result:
        """A turn that ends the run (or found it ended): its update as the node returns it.
        Patterns that route with ``Command`` go to END."""
        return update

    # -- the turn --------------------------------------------------------------------------------
    def turn(self, state: LoopState, calls: Calls) -> Work[Result]:
        if state.get("stop_reason"):
            return self.ended({})
        first = started(self.ctx, state)
        halted = self.own_limit(state) or policy_halt(self.ctx, state) or self.halt(state)
        if halted:
            return self.ended({**first, **halted})
        update: Update = {**first, "turns": 1, "visits": {self.name: 1}}
        limit = self.ctx.spec.policy.max_total_time_seconds
        calls.bound_run(state.get("started_at") or first.get("started_at"), limit)
        try:
            outcome = yield from self.work(state, calls)
        except StructuredOutputError as exc:
            failed = failure(self.name, str(exc))
        except Exception as exc:
            failed = failed_call(exc, self.ctx, calls.attempt, self.what, self.name)
        else:
            return self.done(state, update, outcome, calls)
        return self.ended({**update, **failed, "usage": calls.usage()})

    def calls(self, runtime: Runtime) -> Calls:
        """A new attempt's calls (LangGraph's RetryPolicy numbers the attempts)."""
        attempt = runtime.execution_info.node_attempt if runtime.execution_info else 1
        return Calls(self.timeout, self.prices, attempt, self.budget)

    def __call__(self, state: LoopState, config: RunnableConfig, runtime: Runtime) -> Result:
        calls = self.calls(runtime)
        return drive(self.turn(state, calls), config)

    async def acall(self, state: LoopState, config: RunnableConfig, runtime: Runtime) -> Result:
        calls = self.calls(runtime)
        return await adrive(self.turn(state, calls), config)


def context_budget(ctx: CompileContext, agent: AgentRole) -> ContextBudget | None:
    """The spec's `policy.context_budget` for ``agent``'s calls (its own model summarizes)."""
    policy = ctx.spec.policy
    if policy.context_budget is None:
        return None
    return ContextBudget(policy.context_budget, policy.context_mode, lambda: ctx.model_for(agent))
