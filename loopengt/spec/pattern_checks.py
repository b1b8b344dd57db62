"""Per-pattern rules: the pattern blocks, the parts each pattern's compiler derives, and whether
a looping pattern has a limit.

Every spec that passes these compiles: a shape the compiler could not build is reported here,
with its position, instead of failing in ``compile_spec``.

Two kinds of checks:

* :class:`PatternChecks` reads the raw data, like every other cross-reference check, so its
  problems are reported together with the rest;
* :func:`role_problems` checks the parts that :mod:`loopengt.spec.roles` derives (the
  evaluator's generator, the fan-out's map step and aggregator ...). It needs the validated
  model, so it runs once everything else is valid, and it uses the very functions the
  compilers call, so the two cannot disagree about who plays which part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loopengt.spec.check_base import CheckerBase, Path, items, reachable, string, strings
from loopengt.spec.errors import Problem
from loopengt.spec.models import LoopSpec
from loopengt.spec.roles import RoleError, evaluator_roles, fan_out_roles, supervisor_roles

CYCLIC_PATTERNS = ("supervisor_worker", "handoff", "evaluator_optimizer", "custom")
BLOCKS = {
    "supervisor_worker": "supervisor",
    "evaluator_optimizer": "evaluator",
    "parallel_fan_out": "fan_out",
    "handoff": "handoff",
    "custom": "graph",
}
LIMITS = {
    "supervisor_worker": ("supervisor", "max_turns"),
    "evaluator_optimizer": ("evaluator", "max_iterations"),
    "handoff": ("handoff", "max_handoffs"),
}


class PatternChecks(CheckerBase):
    """The per-pattern rules on the raw data; ``checks._Checker`` runs them with the rest."""

    def check_pattern_blocks(self) -> None:
        d = self.data
        if isinstance(d.get("supervisor"), dict):
            self.check_supervisor(d["supervisor"])
        if isinstance(d.get("evaluator"), dict):
            for key in ("generator", "evaluator"):
                self.ref(("evaluator", key), d["evaluator"].get(key), "step")
        if isinstance(d.get("fan_out"), dict):
            self.check_fan_out(d["fan_out"])
        self.check_map_steps()
        if isinstance(d.get("handoff"), dict):
            self.ref(("handoff", "entry"), d["handoff"].get("entry"), "agent")
        if isinstance(d.get("graph"), dict):
            self.check_custom_graph(d["graph"])
        for pattern, key in BLOCKS.items():
            if key in d and d[key] is not None and self.pattern != pattern:
                self.add((key,), f"'{key}' only applies to pattern {pattern!r}")
        if self.pattern == "custom" and not isinstance(d.get("graph"), dict):
            self.add(("pattern",), "pattern 'custom' needs a 'graph' block (entry and edges)")

    def check_supervisor(self, block: dict[str, Any]) -> None:
        self.ref(("supervisor", "agent"), block.get("agent"), "agent")
        for j, worker in strings(block, "workers"):
            if worker == block.get("agent"):
                # both would be the graph node named after the agent
                path = ("supervisor", "workers", j)
                self.add(path, f"{worker!r} is the supervisor; it cannot also be a worker")
            else:
                self.ref(("supervisor", "workers", j), worker, "agent")

    def check_fan_out(self, block: dict[str, Any]) -> None:
        for j, branch in strings(block, "branches"):
            if branch == block.get("aggregator"):
                path = ("fan_out", "branches", j)
                self.add(path, f"step {branch!r} is the aggregator; it cannot also be a branch")
            else:
                self.ref(("fan_out", "branches", j), branch, "step")
        for key in ("map_step", "aggregator"):
            self.ref(("fan_out", key), block.get(key), "step")
        if "map_over" in block:
            self.map_over(("fan_out", "map_over"), block["map_over"])

    def check_map_steps(self) -> None:
        """One step maps over a list: ``fan_out.map_step``, else the first with ``map_over``.
        The compiler would run any other step that has ``map_over`` once, unmapped."""
        block = self.data.get("fan_out")
        block = block if isinstance(block, dict) else {}
        declared = string(block.get("map_step"))
        mapped, where = declared, "fan_out.map_step"
        for i, step in items(self.data, "steps"):
            if step.get("map_over") is None:
                continue
            path: Path = ("steps", i, "map_over")
            name = step.get("name")
            if self.pattern != "parallel_fan_out":
                self.add(path, "map_over only applies to pattern 'parallel_fan_out'")
            elif mapped is None:
                mapped, where = name, f"steps[{i}].map_over"
            elif name != mapped:
                self.add(path, f"only one step maps over a list, and it is {mapped!r} ({where})")
            elif name == declared and step["map_over"] != block.get("map_over", step["map_over"]):
                self.add(path, f"differs from fan_out.map_over {block['map_over']!r}")

    def check_custom_graph(self, graph: dict[str, Any]) -> None:
        self.ref(("graph", "entry"), graph.get("entry"), "step")
        conditional: dict[str, int] = {}  # source -> index of its conditional edge
        for i, edge in items(graph, "edges"):
            base: Path = ("graph", "edges", i)
            source = edge.get("from")
            self.ref((*base, "from"), source, "step")
            self.ref((*base, "to"), edge.get("to"), "step", allow_end=True)
            self.ref((*base, "default"), edge.get("default"), "step", allow_end=True)
            # a plain edge has no branches (a dumped LoopSpec holds `branches: []`)
            if isinstance(source, str) and edge.get("branches"):
                if source in conditional:
                    # LangGraph allows one router per node: branches are tried in order there
                    first = conditional[source]
                    self.add(
                        (*base, "from"),
                        f"step {source!r} already has a conditional edge (graph.edges[{first}]);"
                        " put all its branches in that edge",
                    )
                conditional.setdefault(source, i)
            for j, branch in items(edge, "branches"):
                self.ref((*base, "branches", j, "to"), branch.get("to"), "step", allow_end=True)
                when = branch.get("when")
                if isinstance(when, dict):
                    self.check_condition((*base, "branches", j, "when"), when)

    def check_condition(self, path: Path, when: dict[str, Any]) -> None:
        self.ref((*path, "step"), when.get("step"), "step")
        counter = when.get("counter")
        if isinstance(counter, str) and counter != "turns":
            head, _, step = counter.partition(".")
            if head != "visits" or not step:
                self.add(
                    (*path, "counter"), f"counter must be 'turns' or 'visits.STEP', not {counter!r}"
                )
            else:
                self.ref((*path, "counter"), step, "step")

    def check_termination(self) -> None:
        if self.pattern not in CYCLIC_PATTERNS:
            return
        policy: dict[str, Any] = self.data.get("policy") or {}
        if not isinstance(policy, dict):
            return
        if self.pattern == "custom" and not self._custom_graph_loops():
            return
        block, key = LIMITS.get(self.pattern, ("", ""))
        pattern_block = self.data.get(block)
        has_pattern_limit = isinstance(pattern_block, dict) and pattern_block.get(key)
        if policy.get("max_turns") or policy.get("stop_conditions") or has_pattern_limit:
            return
        also = f", {block}.{key}" if block else ""
        self.add(
            ("policy",),
            f"pattern {self.pattern!r} loops but has no limit: set policy.max_turns"
            f"{also} or a policy.stop_conditions entry",
        )

    def _custom_graph_loops(self) -> bool:
        graph = self.data.get("graph") or {}
        successors: dict[str, set[str]] = {}
        for _, edge in items(graph, "edges"):
            targets = [edge.get("to"), edge.get("default")]
            targets += [b.get("to") for _, b in items(edge, "branches")]
            source = string(edge.get("from"))
            if source is not None:
                # any value may stand where a name should (the model reports its type)
                named = {t for t in targets if isinstance(t, str)}
                successors.setdefault(source, set()).update(named)
        return any(start in reachable(start, successors) for start in successors)


# -- the derived parts, on the validated model ---------------------------------------------


def role_problems(spec: LoopSpec) -> list[Problem]:
    """Problems with the parts a pattern's compiler derives (positions are filled later)."""
    check: Callable[[LoopSpec], list[Problem]] | None = {
        "supervisor_worker": _supervisor_problems,
        "evaluator_optimizer": _evaluator_problems,
        "parallel_fan_out": _fan_out_problems,
    }.get(spec.pattern)
    if check is None:
        return []
    try:
        return check(spec)
    except RoleError as exc:
        block = BLOCKS[spec.pattern]
        return [Problem((block,) if getattr(spec, block) is not None else ("pattern",), str(exc))]


def _requires(spec: LoopSpec) -> dict[str, list[str]]:
    return {s.name: s.requires for s in spec.steps}


def _dependency_path(spec: LoopSpec, step: str, upstream: str) -> Path:
    """Where ``step`` declares the dependency that leads (perhaps through others) to
    ``upstream``: its ``depends_on`` list, else its seed-schema ``dependencies``."""
    requires = _requires(spec)
    index, found = next((i, s) for i, s in enumerate(spec.steps) if s.name == step)
    via = [d for d in found.depends_on if d == upstream or upstream in reachable(d, requires)]
    return ("steps", index, "depends_on" if via else "dependencies")


def _supervisor_problems(spec: LoopSpec) -> list[Problem]:
    supervisor_roles(spec)  # raises RoleError when there is no worker
    return []


def _evaluator_problems(spec: LoopSpec) -> list[Problem]:
    roles = evaluator_roles(spec)
    gen, ev = roles.generator, roles.evaluator
    if gen == ev:  # only a block can say so: the derived generator is another step
        message = f"step {ev!r} is also the generator; the evaluator judges another step"
        return [Problem(("evaluator", "evaluator"), message)]
    if ev not in reachable(gen, _requires(spec)):
        return []
    message = f"generator {gen!r} depends on evaluator {ev!r}; it must run before the evaluator"
    if spec.evaluator is not None:
        return [Problem(("evaluator", "generator"), message)]
    why = " (without an 'evaluator' block, the last step judges the step before it)"
    return [Problem(_dependency_path(spec, gen, ev), message + why)]


def _fan_out_problems(spec: LoopSpec) -> list[Problem]:
    roles = fan_out_roles(spec)
    aggregator = roles.aggregator
    if aggregator is None:
        return []
    if aggregator == roles.map_step:
        message = f"step {aggregator!r} is the map step; it cannot be its own aggregator"
        return [Problem(("fan_out", "aggregator"), message)]
    # the aggregator waits for every branch and the map step: none of them may wait for it
    # (a derived aggregator depends on them all, so only a declared one can get here)
    requires = _requires(spec)
    problems = []
    for name in [*(b for b in roles.branches if b != aggregator), *filter(None, [roles.map_step])]:
        if aggregator in reachable(name, requires):
            kind = "map step" if name == roles.map_step else "branch"
            problems.append(
                Problem(
                    _dependency_path(spec, name, aggregator),
                    f"{kind} {name!r} depends on the aggregator {aggregator!r}, which waits for "
                    "every branch: neither could run",
                )
            )
    return problems
