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
* handoff: the entry agent is ``handoff.entry``, else the first agent. An agent hands off to
  its ``handoffs``, else, when the steps declare an order, to the agents of the steps right
  after its own (the last one answers), else to every other agent (see
  :func:`handoff_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass

from loopengt.spec.check_base import reachable
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


def handoff_targets(spec: LoopSpec, agent_name: str) -> list[str]:
    """The agents ``agent_name`` may hand off to, in the handoff pattern.

    * Its own ``handoffs`` list, when it has one, as written: back-edges included, since
      that is how a spec asks for a loop; ``handoffs: []``, none (it answers).
    * Else, when the steps declare an order (some step has dependencies), the agents of the
      steps that come right after its own steps, in step order. The agent of the last step
      gets none: it answers, which ends the run.
    * Else (no step order, or an agent that runs no step and so stands outside the order),
      every other agent.

    Why: "every other agent" as the only default offered billing, in a seed-schema pipeline
    triage -> billing -> closer, a transfer back to triage, and a model that takes the first
    transfer offered ping-ponged triage <-> billing until max_turns. The seed's handoff is
    an enrichment pipeline, and its steps already say who comes next.

    "Right after" means directly, not through another step: a seed step lists every step
    whose output it reads (``edit`` depends on ``research`` and ``draft``), so ``edit`` does
    not come right after ``research``; offering the editor to the researcher would let the
    run skip the writer.
    """
    agent = next((a for a in spec.agents if a.name == agent_name), None)
    if agent is None:
        raise ValueError(f"unknown agent {agent_name!r}")
    if agent.handoffs is not None:  # `handoffs: []` too: an agent that answers
        return list(dict.fromkeys(agent.handoffs))
    everyone_else = [a.name for a in spec.agents if a.name != agent_name]
    requires = {s.name: s.requires for s in spec.steps}
    own = {s.name for s in spec.steps if step_agent(spec, s.name) == agent_name}
    if not own or not any(requires.values()):
        return everyone_else
    targets: list[str] = []
    for step in spec.steps:
        if not any(_right_after(step.name, mine, requires) for mine in own):
            continue
        target = step_agent(spec, step.name)
        if target != agent_name and target not in targets:
            targets.append(target)
    return targets


def _right_after(step: str, before: str, requires: dict[str, list[str]]) -> bool:
    """``step`` depends on ``before`` directly, not only through another of its dependencies."""
    deps = requires[step]
    return before in deps and not any(before in reachable(d, requires) for d in deps)
