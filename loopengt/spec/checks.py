"""Cross-reference checks on a spec's raw data.

They run on the parsed YAML rather than on the validated model so that a type error in one
place does not hide a dangling reference in another: every problem is reported at once.
Values of the wrong type are skipped here; the model validation reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from loopengt.spec.errors import Problem, did_you_mean
from loopengt.templating import PATTERN_VARIABLES, placeholders, resolve

Path = tuple[str | int, ...]
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
END = "END"
CYCLIC_PATTERNS = ("supervisor_worker", "handoff", "evaluator_optimizer", "custom")
VARIABLE_PATTERNS = {
    "feedback": ("evaluator_optimizer", "custom"),
    "item": ("parallel_fan_out",),
    "task": ("supervisor_worker", "handoff"),
}
PROVIDERS = ("openai", "anthropic", "ollama", "local")


def _items(data: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, mapping) for each mapping in the list ``data[key]``."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strs(data: Any, key: str) -> Iterator[tuple[int, str]]:
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield i, item


class _Checker:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[Problem] = []
        self.pattern = data.get("pattern", "sequential")
        self.agents = self._names("agents")
        self.steps = self._names("steps")
        self.tools = self._names("tools")
        declared = data.get("inputs")
        self.inputs = set(declared) if isinstance(declared, dict) else set()

    def add(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message))

    def _names(self, key: str) -> list[str]:
        seen: dict[str, int] = {}
        for i, item in _items(self.data, key):
            name = _str(item.get("name"))
            if name is None:
                continue
            if not NAME_RE.match(name):
                self.add(
                    (key, i, "name"),
                    f"invalid name {name!r}: use letters, digits, '_' and '-' only",
                )
            elif "__" in name and key in ("agents", "steps"):
                # they name graph nodes, and loopengt's own nodes are STEP__passed,
                # STEP__join, STEP__dispatch (LangGraph's __start__ and __end__)
                self.add(
                    (key, i, "name"),
                    f"invalid name {name!r}: '__' is reserved for the nodes loopengt adds",
                )
            if name in seen:
                kind = key[:-1]
                self.add(
                    (key, i, "name"),
                    f"duplicate {kind} name {name!r} (first defined at {key}[{seen[name]}])",
                )
            else:
                seen[name] = i
        return list(seen)

    def ref(self, path: Path, value: Any, kind: str, allow_end: bool = False) -> None:
        known = {"agent": self.agents, "step": self.steps, "tool": self.tools}[kind]
        if not isinstance(value, str) or value in known or (allow_end and value == END):
            return
        self.add(path, f"unknown {kind} {value!r}{did_you_mean(value, known)}")

    def run(self) -> list[Problem]:
        self.check_steps()
        self.check_agents()
        self.check_cycles()
        self.check_pattern_blocks()
        self.check_policy()
        self.check_termination()
        return self.problems

    def check_steps(self) -> None:
        # an unknown pattern is reported by the model; do not guess whether it needs steps
        needs_steps = self.pattern in (
            "sequential",
            "parallel_fan_out",
            "evaluator_optimizer",
            "custom",
        )
        if needs_steps and isinstance(self.data.get("steps"), list) and not self.data["steps"]:
            self.add(("steps",), f"pattern {self.pattern!r} needs at least one step")
        for i, step in _items(self.data, "steps"):
            if "agent" in step:
                self.ref(("steps", i, "agent"), step["agent"], "agent")
            elif len(self.agents) > 1:
                self.add(("steps", i), "missing 'agent' (required when there are several agents)")
            for j, dep in _strs(step, "depends_on"):
                self._dependency(("steps", i, "depends_on", j), dep, step.get("name"))
            for j, seed_dep in _items(step, "dependencies"):
                path = ("steps", i, "dependencies", j, "step_name")
                self._dependency(path, seed_dep.get("step_name"), step.get("name"))
            if isinstance(step.get("prompt"), str):
                self.check_template(("steps", i, "prompt"), step["prompt"], step.get("name"))
            self._model(("steps", i, "model"), step.get("model"))
            self._json_schema(("steps", i, "output_schema"), step.get("output_schema"))
            if isinstance(step.get("gate"), dict):
                self.check_gate(("steps", i, "gate"), step["gate"])
            if "map_over" in step:
                self._map_over(("steps", i, "map_over"), step["map_over"])

    def _dependency(self, path: Path, dep: Any, owner: Any) -> None:
        if dep == owner and isinstance(dep, str):
            self.add(path, f"step {dep!r} depends on itself")
        else:
            self.ref(path, dep, "step")

    def check_agents(self) -> None:
        for i, agent in _items(self.data, "agents"):
            for j, tool in _strs(agent, "tools"):
                self.ref(("agents", i, "tools", j), tool, "tool")
            for j, target in _strs(agent, "handoffs"):
                if target == agent.get("name"):
                    self.add(("agents", i, "handoffs", j), "an agent cannot hand off to itself")
                else:
                    self.ref(("agents", i, "handoffs", j), target, "agent")
            self._model(("agents", i, "model"), agent.get("model"))
            if isinstance(agent.get("instructions"), str):
                self.check_template(("agents", i, "instructions"), agent["instructions"], None)
        defaults = self.data.get("defaults")
        if isinstance(defaults, dict):
            self._model(("defaults", "model"), defaults.get("model"))

    def _model(self, path: Path, model: Any) -> None:
        if not isinstance(model, str) or model == "local":
            return
        provider, sep, name = model.partition(":")
        if not sep or not name:
            self.add(path, f"model {model!r} must be 'provider:model', e.g. 'openai:gpt-4o-mini'")
        elif provider not in PROVIDERS:
            hint = did_you_mean(provider, PROVIDERS)
            self.add(path, f"unknown model provider {provider!r}{hint}; use one of {PROVIDERS}")

    def _json_schema(self, path: Path, schema: Any) -> None:
        if not isinstance(schema, dict):
            return
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "".join(f"[{p!r}]" for p in exc.path)
            self.add(path, f"invalid JSON Schema{' at ' + where if where else ''}: {exc.message}")

    def _regex(self, path: Path, pattern: Any) -> None:
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error as exc:
                self.add(path, f"invalid regular expression: {exc}")

    def _map_over(self, path: Path, value: Any) -> None:
        if not isinstance(value, str):
            return
        head, _, key = value.partition(".")
        if head != "input" or not key:
            self.add(path, f"map_over must be 'input.KEY', got {value!r}")
        elif key not in self.inputs:
            self.add(path, f"unknown input {key!r}{did_you_mean(key, self.inputs)}; declare it")

    def check_template(self, path: Path, template: str, owner: Any) -> None:
        steps = set(self.steps)
        upstream = self._upstream(owner) if self.pattern == "sequential" and owner else None
        for expr in placeholders(template):
            ref = resolve(expr, steps)
            shown = "{{" + expr + "}}"
            if ref.kind == "input" and ref.name and ref.name not in self.inputs:
                hint = did_you_mean(ref.name, self.inputs)
                self.add(path, f"{shown} names unknown input {ref.name!r}{hint}; declare it")
            elif ref.kind == "step" and ref.name not in steps:
                hint = did_you_mean(ref.name, steps)
                self.add(path, f"{shown} names unknown step {ref.name!r}{hint}")
            elif ref.kind == "step" and upstream is not None and ref.name not in upstream:
                self.add(
                    path,
                    f"{shown}: step {ref.name!r} does not run before {owner!r}; "
                    f"add it to depends_on",
                )
            elif ref.kind == "variable" and self.pattern not in VARIABLE_PATTERNS[ref.name]:
                allowed = VARIABLE_PATTERNS[ref.name]
                which = " and ".join(allowed) + (" patterns" if len(allowed) > 1 else " pattern")
                self.add(path, f"{shown} is only set in the {which}")
            elif ref.kind == "unknown":
                names = [*steps, "goal", "input", *PATTERN_VARIABLES]
                self.add(path, f"unknown placeholder {shown}{did_you_mean(ref.name, names)}")

    def _deps(self) -> dict[str, list[str]]:
        graph: dict[str, list[str]] = {}
        for _, step in _items(self.data, "steps"):
            name = _str(step.get("name"))
            if name is None or name in graph:
                continue
            deps = [d for _, d in _strs(step, "depends_on")]
            deps += [_str(d.get("step_name")) or "" for _, d in _items(step, "dependencies")]
            graph[name] = [d for d in deps if d in self.steps and d != name]
        return graph

    def _upstream(self, step: str) -> set[str]:
        return reachable(step, self._deps())

    def check_cycles(self) -> None:
        graph = self._deps()
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        stack: list[str] = []
        reported: set[frozenset[str]] = set()

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for dep in graph.get(node, []):
                if state.get(dep) == 1:
                    cycle = stack[stack.index(dep) :]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        # print in execution order: a dependency runs before its dependant
                        chain = " -> ".join([*reversed(cycle), cycle[-1]])
                        # report on the first step so named (as in _deps), under the key that
                        # spells its edge into the cycle (seed specs use `dependencies`)
                        index, step = next(
                            (i, s) for i, s in _items(self.data, "steps") if s.get("name") == dep
                        )
                        listed = [d for _, d in _strs(step, "depends_on")]
                        key = "depends_on" if cycle[1] in listed else "dependencies"
                        self.add(("steps", index, key), f"dependency cycle: {chain}")
                elif dep not in state:
                    visit(dep)
            stack.pop()
            state[node] = 2

        for name in graph:
            if name not in state:
                visit(name)

    def check_pattern_blocks(self) -> None:
        d = self.data
        if isinstance(d.get("supervisor"), dict):
            block = d["supervisor"]
            self.ref(("supervisor", "agent"), block.get("agent"), "agent")
            for j, worker in _strs(block, "workers"):
                self.ref(("supervisor", "workers", j), worker, "agent")
        if isinstance(d.get("evaluator"), dict):
            for key in ("generator", "evaluator"):
                self.ref(("evaluator", key), d["evaluator"].get(key), "step")
        if isinstance(d.get("fan_out"), dict):
            block = d["fan_out"]
            for j, branch in _strs(block, "branches"):
                self.ref(("fan_out", "branches", j), branch, "step")
            for key in ("map_step", "aggregator"):
                self.ref(("fan_out", key), block.get(key), "step")
            if "map_over" in block:
                self._map_over(("fan_out", "map_over"), block["map_over"])
        if isinstance(d.get("handoff"), dict):
            self.ref(("handoff", "entry"), d["handoff"].get("entry"), "agent")
        if isinstance(d.get("graph"), dict):
            self.check_custom_graph(d["graph"])
        expected = {
            "supervisor_worker": "supervisor",
            "evaluator_optimizer": "evaluator",
            "parallel_fan_out": "fan_out",
            "handoff": "handoff",
            "custom": "graph",
        }
        for pattern, key in expected.items():
            if key in d and d[key] is not None and self.pattern != pattern:
                self.add((key,), f"'{key}' only applies to pattern {pattern!r}")
        if self.pattern == "custom" and not isinstance(d.get("graph"), dict):
            self.add(("pattern",), "pattern 'custom' needs a 'graph' block (entry and edges)")

    def check_custom_graph(self, graph: dict[str, Any]) -> None:
        self.ref(("graph", "entry"), graph.get("entry"), "step")
        for i, edge in _items(graph, "edges"):
            base: Path = ("graph", "edges", i)
            self.ref((*base, "from"), edge.get("from"), "step")
            self.ref((*base, "to"), edge.get("to"), "step", allow_end=True)
            self.ref((*base, "default"), edge.get("default"), "step", allow_end=True)
            for j, branch in _items(edge, "branches"):
                self.ref((*base, "branches", j, "to"), branch.get("to"), "step", allow_end=True)
                when = branch.get("when")
                if isinstance(when, dict):
                    self.ref((*base, "branches", j, "when", "step"), when.get("step"), "step")
                    counter = when.get("counter")
                    if isinstance(counter, str) and counter != "turns":
                        head, _, step = counter.partition(".")
                        if head != "visits" or not step:
                            path = (*base, "branches", j, "when", "counter")
                            self.add(
                                path, f"counter must be 'turns' or 'visits.STEP', not {counter!r}"
                            )
                        else:
                            self.ref((*base, "branches", j, "when", "counter"), step, "step")

    def check_gate(self, path: Path, gate: dict[str, Any]) -> None:
        self._regex((*path, "pattern"), gate.get("pattern"))
        self._json_schema((*path, "schema"), gate.get("schema"))
        self.ref((*path, "judge"), gate.get("judge"), "agent")

    def check_policy(self) -> None:
        policy = self.data.get("policy")
        if not isinstance(policy, dict):
            return
        for i, gate in _items(policy, "gates"):
            self.ref(("policy", "gates", i, "step"), gate.get("step"), "step")
            self.check_gate(("policy", "gates", i), gate)
        for i, cond in _items(policy, "stop_conditions"):
            self.ref(("policy", "stop_conditions", i, "step"), cond.get("step"), "step")
            self._regex(("policy", "stop_conditions", i, "matches"), cond.get("matches"))
        approvals = policy.get("approvals")
        for i, approval in enumerate(approvals if isinstance(approvals, list) else []):
            if isinstance(approval, str):
                self.ref(("policy", "approvals", i), approval, "step")
            elif isinstance(approval, dict):
                self.ref(("policy", "approvals", i, "step"), approval.get("step"), "step")

    def check_termination(self) -> None:
        if self.pattern not in CYCLIC_PATTERNS:
            return
        policy: dict[str, Any] = self.data.get("policy") or {}
        if not isinstance(policy, dict):
            return
        limits = {
            "supervisor_worker": ("supervisor", "max_turns"),
            "evaluator_optimizer": ("evaluator", "max_iterations"),
            "handoff": ("handoff", "max_handoffs"),
        }
        if self.pattern == "custom" and not self._custom_graph_loops():
            return
        block, key = limits.get(self.pattern, ("", ""))
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
        for _, edge in _items(graph, "edges"):
            targets = {edge.get("to"), edge.get("default")}
            targets |= {b.get("to") for _, b in _items(edge, "branches")}
            source = _str(edge.get("from"))
            if source is not None:
                named = {t for t in targets if isinstance(t, str)}
                successors.setdefault(source, set()).update(named)
        return any(start in reachable(start, successors) for start in successors)


def reachable(start: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reachable from ``start`` along ``edges`` (``start`` itself only through a
    cycle)."""
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    return seen


def check_references(data: dict[str, Any]) -> list[Problem]:
    """Every cross-reference problem in the raw spec data (positions are filled later)."""
    return _Checker(data).run()
