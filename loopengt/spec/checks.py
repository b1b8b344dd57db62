"""Cross-reference checks on a spec's raw data.

They run on the parsed YAML rather than on the validated model so that a type error in one
place does not hide a dangling reference in another: every problem is reported at once.
Values of the wrong type are skipped here; the model validation reports them.

This module checks names, steps, agents, prompt templates, dependency cycles and the policy;
the per-pattern rules are in :mod:`loopengt.spec.pattern_checks`, the shared walking helpers
in :mod:`loopengt.spec.check_base`.
"""

from __future__ import annotations

import re
from typing import Any

from loopengt.providers import PROVIDER_NAMES, WITHOUT_MODEL
from loopengt.spec.check_base import Path, items, reachable, string, strings
from loopengt.spec.errors import Problem, did_you_mean
from loopengt.spec.pattern_checks import PatternChecks
from loopengt.templating import PATTERN_VARIABLES, placeholders, resolve

__all__ = ["check_references", "reachable"]  # reachable: the compilers import it from here

VARIABLE_PATTERNS = {
    "feedback": ("evaluator_optimizer", "custom"),
    "item": ("parallel_fan_out",),
    "task": ("supervisor_worker", "handoff"),
}


class _Checker(PatternChecks):
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
        for i, step in items(self.data, "steps"):
            if "agent" in step:
                self.ref(("steps", i, "agent"), step["agent"], "agent")
            elif len(self.agents) > 1:
                self.add(("steps", i), "missing 'agent' (required when there are several agents)")
            for j, dep in strings(step, "depends_on"):
                self._dependency(("steps", i, "depends_on", j), dep, step.get("name"))
            for j, seed_dep in items(step, "dependencies"):
                path = ("steps", i, "dependencies", j, "step_name")
                self._dependency(path, seed_dep.get("step_name"), step.get("name"))
            if isinstance(step.get("prompt"), str):
                self.check_template(("steps", i, "prompt"), step["prompt"], step.get("name"))
            self._model(("steps", i, "model"), step.get("model"))
            self._json_schema(("steps", i, "output_schema"), step.get("output_schema"))
            if isinstance(step.get("gate"), dict):
                self.check_gate(("steps", i, "gate"), step["gate"])
            if "map_over" in step:
                self.map_over(("steps", i, "map_over"), step["map_over"])

    def _dependency(self, path: Path, dep: Any, owner: Any) -> None:
        if dep == owner and isinstance(dep, str):
            self.add(path, f"step {dep!r} depends on itself")
        else:
            self.ref(path, dep, "step")

    def check_agents(self) -> None:
        for i, agent in items(self.data, "agents"):
            for j, tool in strings(agent, "tools"):
                self.ref(("agents", i, "tools", j), tool, "tool")
            for j, target in strings(agent, "handoffs"):
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
        evals = self.data.get("evals")
        if isinstance(evals, dict):
            self._model(("evals", "judge_model"), evals.get("judge_model"))

    def _model(self, path: Path, model: Any) -> None:
        if not isinstance(model, str) or model in WITHOUT_MODEL:
            return
        provider, sep, name = model.partition(":")
        if (not sep or not name) and provider not in WITHOUT_MODEL:
            self.add(path, f"model {model!r} must be 'provider:model', e.g. 'openai:gpt-4o-mini'")
        elif provider not in PROVIDER_NAMES:
            hint = did_you_mean(provider, PROVIDER_NAMES)
            known = ", ".join(PROVIDER_NAMES)
            self.add(path, f"unknown model provider {provider!r}{hint}; use one of {known}")

    def _json_schema(self, path: Path, schema: Any) -> None:
        if not isinstance(schema, dict):
            return
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "".join(f"[{p!r}]" for p in exc.path)
            self.add(path, f"invalid JSON Schema{' at ' + where if where else ''}: {exc.message}")
        except (re.error, ValueError, OverflowError, RecursionError) as exc:
            # the format checker compiles each `pattern`; `a{9999999999}` overflows instead of
            # failing as a format error
            self.add(path, f"invalid JSON Schema: {_reason(exc)}")

    def _regex(self, path: Path, pattern: Any) -> None:
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                # not only re.error: a huge repeat count overflows, deep groups recurse
                self.add(path, f"invalid regular expression: {_reason(exc)}")

    def check_template(self, path: Path, template: str, owner: Any) -> None:
        steps = set(self.steps)
        # the owner is raw data: a name that is not text is reported by the model check
        sequential = self.pattern == "sequential" and isinstance(owner, str) and owner
        upstream = self._upstream(owner) if sequential else None
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
            elif ref.name == "feedback" and self.pattern == "custom" and not self._verdicts():
                self.warn(
                    path,
                    f"{shown} is always empty: no step gives a verdict (an output_schema "
                    "with a boolean 'pass' and a 'feedback' string)",
                )
            elif ref.kind == "unknown":
                names = [*steps, "goal", "input", *PATTERN_VARIABLES]
                self.add(path, f"unknown placeholder {shown}{did_you_mean(ref.name, names)}")

    def _verdicts(self) -> list[str]:
        """Steps of a custom graph whose output is a verdict (fills {{feedback}})."""
        found = []
        for _, step in items(self.data, "steps"):
            schema = step.get("output_schema")
            props = schema.get("properties") if isinstance(schema, dict) else None
            passed = props.get("pass") if isinstance(props, dict) else None
            if isinstance(passed, dict) and passed.get("type") == "boolean":
                found.append(str(step.get("name")))
        return found

    def _upstream(self, step: str) -> set[str]:
        return reachable(step, self.requires())

    def check_cycles(self) -> None:
        graph = self.requires()
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
                        # report on the first step so named (as in requires), under the key that
                        # spells its edge into the cycle (seed specs use `dependencies`)
                        index, step = next(
                            (i, s) for i, s in items(self.data, "steps") if s.get("name") == dep
                        )
                        listed = [d for _, d in strings(step, "depends_on")]
                        key = "depends_on" if cycle[1] in listed else "dependencies"
                        self.add(("steps", index, key), f"dependency cycle: {chain}")
                elif dep not in state:
                    visit(dep)
            stack.pop()
            state[node] = 2

        for name in graph:
            if name not in state:
                visit(name)

    def check_gate(self, path: Path, gate: dict[str, Any]) -> None:
        self._regex((*path, "pattern"), gate.get("pattern"))
        self._json_schema((*path, "schema"), gate.get("schema"))
        self.ref((*path, "judge"), gate.get("judge"), "agent")

    def check_policy(self) -> None:
        policy = self.data.get("policy")
        if not isinstance(policy, dict):
            return
        for i, gate in items(policy, "gates"):
            self.ref(("policy", "gates", i, "step"), gate.get("step"), "step")
            self.check_gate(("policy", "gates", i), gate)
        for i, cond in items(policy, "stop_conditions"):
            self.ref(("policy", "stop_conditions", i, "step"), cond.get("step"), "step")
            self._regex(("policy", "stop_conditions", i, "matches"), cond.get("matches"))
        approvals = policy.get("approvals")
        for i, approval in enumerate(approvals if isinstance(approvals, list) else []):
            if isinstance(approval, str):
                self.ref(("policy", "approvals", i), approval, "step")
            elif isinstance(approval, dict):
                self.ref(("policy", "approvals", i, "step"), approval.get("step"), "step")
        self.check_context_budget(policy.get("context_budget"))

    def check_context_budget(self, budget: Any) -> None:
        """A budget must hold each step's prompt with its agent's instructions (counted as
        the runtime counts: about four characters a token), or no call could be made."""
        if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
            return
        agents = {string(a.get("name")): a for _, a in items(self.data, "agents")}
        first = next(iter(agents.values()), {})
        for _, step in items(self.data, "steps"):
            agent = agents.get(string(step.get("agent"))) or first
            texts = [agent.get("instructions"), agent.get("description"), step.get("prompt")]
            needed = sum(len(t) for t in texts if isinstance(t, str)) // 4 + 8
            if needed > budget:
                self.add(
                    ("policy", "context_budget"),
                    f"{budget} tokens cannot hold the prompt of step {step.get('name')!r} with its "
                    f"agent's instructions (about {needed} tokens); raise it",
                )
                return


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_references(data: dict[str, Any]) -> list[Problem]:
    """Every cross-reference problem in the raw spec data (positions are filled later)."""
    return _Checker(data).run()


def check_warnings(data: dict[str, Any]) -> list[Problem]:
    """What validates but is likely a mistake (positions are filled later)."""
    checker = _Checker(data)
    checker.run()
    return checker.warnings
