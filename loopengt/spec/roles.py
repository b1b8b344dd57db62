"""Who plays which part in a pattern, from the pattern block or the documented defaults.

The defaults let a spec written in the seed-0.1.0 schema (agents and steps only) run under
every pattern:

* supervisor_worker: the supervisor is ``supervisor.agent``, else the agent named or described
  as a supervisor, else the first agent; the workers are ``supervisor.workers``, else every
  other agent.
* evaluator_optimizer: the evaluator is ``evaluator.evaluator``, else the last step; the
  generator is ``evaluator.generator``, else the step the evaluator depends on, else the step
  before it.
* parallel_fan_out: the branches are ``fan_out.branches``, else the steps without
  dependencies; the aggregator is ``fan_out.aggregator``, else the step that depends on every
  branch.
* handoff: the entry agent is ``handoff.entry``, else the first agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopengt.spec.models import LoopSpec


class RoleError(ValueError):
    """The pattern's parts cannot be derived; the message says what to declare."""


@dataclass(frozen=True)
class SupervisorRoles:
    supervisor: str
    workers: tuple[str, ...]


@dataclass(frozen=True)
class EvaluatorRoles:
    generator: str
    evaluator: str


@dataclass(frozen=True)
class FanOutRoles:
    branches: tuple[str, ...]
    map_step: str | None
    map_over: str | None
    aggregator: str | None


def supervisor_roles(spec: LoopSpec) -> SupervisorRoles:
    block = spec.supervisor
    if block is not None:
        supervisor = block.agent
    else:
        named = [a for a in spec.agents if "supervisor" in a.name.lower()]
        described = [a for a in spec.agents if "supervisor" in a.description.lower()]
        supervisor = (named or described or spec.agents)[0].name
    workers = tuple(block.workers) if block and block.workers else ()
    if not workers:
        workers = tuple(a.name for a in spec.agents if a.name != supervisor)
    if not workers:
        raise RoleError("supervisor_worker needs at least one worker agent besides the supervisor")
    return SupervisorRoles(supervisor, workers)


def evaluator_roles(spec: LoopSpec) -> EvaluatorRoles:
    block = spec.evaluator
    if block is not None:
        return EvaluatorRoles(block.generator, block.evaluator)
    if len(spec.steps) < 2:
        raise RoleError(
            "evaluator_optimizer needs two steps (generator, evaluator) or an 'evaluator' block"
        )
    evaluator = spec.steps[-1]
    generator = evaluator.requires[0] if evaluator.requires else spec.steps[-2].name
    return EvaluatorRoles(generator, evaluator.name)


def fan_out_roles(spec: LoopSpec) -> FanOutRoles:
    block = spec.fan_out
    map_step = block.map_step if block else None
    map_over = block.map_over if block else None
    if map_step is None:
        mapped = [s for s in spec.steps if s.map_over]
        if mapped:
            map_step, map_over = mapped[0].name, mapped[0].map_over
    declared_aggregator = block.aggregator if block else None
    if block is not None and block.branches:
        branches = tuple(block.branches)
    else:
        branches = tuple(
            s.name
            for s in spec.steps
            if not s.requires and s.name not in (map_step, declared_aggregator)
        )
    parallel = set(branches) | ({map_step} if map_step else set())
    aggregator = declared_aggregator
    if aggregator is None:
        joins = [s.name for s in spec.steps if parallel and parallel <= set(s.requires)]
        aggregator = joins[0] if joins else None
    if not parallel:
        raise RoleError("parallel_fan_out needs branch steps or a map_step")
    return FanOutRoles(branches, map_step, map_over, aggregator)


def handoff_entry(spec: LoopSpec) -> str:
    return spec.handoff.entry if spec.handoff else spec.agents[0].name


def step_agent(spec: LoopSpec, step_name: str) -> str:
    """The agent that runs a step: its own, or the only agent of the spec."""
    agent = spec.step(step_name).agent
    return agent if agent is not None else spec.agents[0].name
