"""evaluator_optimizer: a generator ↔ evaluator cycle; the evaluator's structured verdict
(pass, score, feedback) decides; the loop stops on a pass or after max iterations.

    START ──> prefix steps ──> GENERATOR ──> body steps ──> EVALUATOR ─pass─> suffix / END
                                   ^                             │
                                   └──────────── fail ───────────┘

* prefix: the generator's (transitive) dependencies, run once in dependency order;
* body: the generator and every step on a path from it to the evaluator, re-run on each
  iteration; they get ``{{feedback}}`` (the latest verdict's feedback), and those whose
  prompt does not use it (or who have none) get it appended to their prompt;
* suffix: every other step, run in dependency order once the evaluator passes.

The verdict is kept in ``verdicts[EVALUATOR]`` and ``outputs[EVALUATOR]``. The evaluator node
decides the outcome in state (completed on a pass with no suffix; ``stopped`` with
``max_iterations: ...`` on the last allowed failure) and its router only reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START

from loopengt.graph.calls import Calls
from loopengt.graph.context import CompileContext
from loopengt.graph.policy import stop
from loopengt.graph.prompts import describe_agent
from loopengt.graph.state import Graph, LoopState, Update, add_router
from loopengt.graph.step import Attempt, StepTurn
from loopengt.graph.wiring import add_step, add_turn
from loopengt.serialization import as_text
from loopengt.spec.checks import reachable
from loopengt.spec.models import LoopSpec, StepSpec
from loopengt.spec.roles import evaluator_roles
from loopengt.status import RunStatus
from loopengt.templating import placeholders, render, resolve

# feedback comes first: a model that decodes in schema order (json_schema, a grammar) says
# what is wrong before it decides. On 4 non-haiku, the embedded critic asked for pass first
# wrote "True" as feedback and passed all 4; feedback first, it said each was not a haiku
# and failed 3 (tests/integration/test_embedded_examples.py)
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "feedback": {"type": "string", "maxLength": 1000},
        "pass": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["feedback", "pass"],
}
DEFAULT_MAX_ITERATIONS = 3  # when neither evaluator.max_iterations nor policy.max_turns is set
JUDGE_INSTRUCTIONS = (
    "Judge the candidate against the goal. First, in feedback, say what is wrong with it, if "
    "anything, specifically enough for its author to fix it. Then set pass to true only if it "
    "fully meets the goal, and give a score from 0 to 1."
)


def max_iterations(spec: LoopSpec) -> int:
    if spec.evaluator is not None and spec.evaluator.max_iterations is not None:
        return spec.evaluator.max_iterations
    if spec.policy.max_turns is not None:
        return max(1, spec.policy.max_turns // 2)
    return DEFAULT_MAX_ITERATIONS


def latest_feedback(state: LoopState, evaluator: str) -> str:
    verdict = (state.get("verdicts") or {}).get(evaluator)
    return str(verdict.get("feedback") or "") if isinstance(verdict, dict) else ""


def uses_feedback(step: StepSpec) -> bool:
    return step.prompt is not None and "feedback" in placeholders(step.prompt)


def passes(verdict: dict[str, Any], pass_score: float | None) -> bool:
    if verdict.get("pass") is True:
        return True
    score = verdict.get("score")
    return pass_score is not None and isinstance(score, int | float) and score >= pass_score


class EvaluatorTurn(StepTurn):
    """The evaluator step as a step whose output is the verdict (so policy checks, retries,
    approval and the structured-output repair all apply), plus the loop decision."""

    def __init__(
        self, ctx: CompileContext, step: StepSpec, generator: str, *, finishes: bool
    ) -> None:
        judged = step.model_copy(update={"output_schema": VERDICT_SCHEMA, "gate": None})
        super().__init__(ctx, judged)
        self.gate = None  # the verdict is this step's gate; a policy.gates entry cannot apply
        self.generator = generator
        self.finishes = finishes  # nothing runs after a pass: this node completes the run
        self.limit = max_iterations(ctx.spec)
        self.pass_score = ctx.spec.evaluator.pass_score if ctx.spec.evaluator else None

    def messages(self, state: LoopState) -> list[BaseMessage]:
        spec, step = self.ctx.spec, self.step
        outputs = state.get("outputs") or {}
        parts = [f"Goal: {spec.goal}"]
        shown: set[str] = set()
        if step.prompt:
            variables = {"feedback": latest_feedback(state, step.name)}
            parts.append(
                render(
                    step.prompt,
                    goal=spec.goal,
                    inputs=state.get("input") or {},
                    outputs=outputs,
                    variables=variables,
                )
            )
            refs = [resolve(p, frozenset(outputs)) for p in placeholders(step.prompt)]
            shown = {r.name for r in refs if r.kind == "step"}
        else:
            task = step.description or "judge the candidate"
            parts.append(f"Your task ({step.name}): {task}")
        if self.generator not in shown and self.generator in outputs:
            candidate = as_text(outputs[self.generator])
            parts.append(f"Candidate (output of step {self.generator!r}):\n{candidate}")
        for dep in step.requires:
            if dep not in shown and dep != self.generator and dep in outputs:
                parts.append(f"Result of step {dep!r}:\n{as_text(outputs[dep])}")
        parts.append(JUDGE_INSTRUCTIONS)
        return [SystemMessage(describe_agent(self.agent)), HumanMessage("\n\n".join(parts))]

    def done(self, state: LoopState, update: Update, outcome: Attempt, calls: Calls) -> Update:
        update = super().done(state, update, outcome, calls)
        verdict = (update.get("outputs") or {}).get(self.step.name)
        if not isinstance(verdict, dict):
            return update  # halted before judging, or failed (reason in stop_reason)
        update["verdicts"] = {self.step.name: verdict}
        if update.get("stop_reason"):
            return update  # a stop condition or the budget ended the run
        iteration = (state.get("visits") or {}).get(self.step.name, 0) + 1
        if passes(verdict, self.pass_score):
            if self.finishes:
                update["status"] = RunStatus.COMPLETED.value
        elif iteration >= self.limit:
            why = str(verdict.get("feedback") or "")[:200]
            reason = (
                f"max_iterations: the output of step {self.generator!r} did not pass "
                f"{self.step.name!r} in {iteration} iteration(s); last feedback: {why}"
            )
            update.update(stop(reason))
        return update


def router(evaluator: str, generator: str, on_pass: list[str], pass_score: float | None) -> Any:
    def route(state: LoopState) -> str | list[str]:
        if state.get("stop_reason"):
            return END
        verdict = (state.get("verdicts") or {}).get(evaluator)
        if isinstance(verdict, dict) and passes(verdict, pass_score):
            return on_pass or END
        return generator

    route.__name__ = f"after_{evaluator}"
    return route


def build(ctx: CompileContext) -> Graph:
    spec = ctx.spec
    roles = evaluator_roles(spec)
    gen, ev = roles.generator, roles.evaluator
    requires = {s.name: list(s.requires) for s in spec.steps}
    dependants: dict[str, list[str]] = {s.name: [] for s in spec.steps}
    for name, deps in requires.items():
        for dep in deps:
            dependants[dep].append(name)
    prefix = reachable(gen, requires)
    assert gen != ev and ev not in prefix, "validation orders them (spec/pattern_checks.py)"
    body = {gen} | (reachable(gen, dependants) & reachable(ev, requires))
    suffix = [s.name for s in spec.steps if s.name not in prefix | body | {ev}]
    suffix_deps = {name: [d for d in requires[name] if d in suffix] for name in suffix}
    suffix_sinks = {name for name in suffix if not any(name in suffix_deps[s] for s in suffix)}

    def variables(state: LoopState) -> dict[str, Any]:
        return {"feedback": latest_feedback(state, ev)}

    def feedback_note(state: LoopState) -> str:
        feedback = latest_feedback(state, ev)
        return f"\n\nFeedback on your previous attempt: {feedback}" if feedback else ""

    graph = ctx.new_graph("verdicts", "feedback")
    exits: dict[str, str] = {}
    for step in spec.steps:
        if step.name == ev:
            continue
        note: Callable[[LoopState], str] | None = None
        if step.name in body and not uses_feedback(step):
            note = feedback_note
        sink = step.name in suffix_sinks
        turn = StepTurn(ctx, step, sink=sink, variables=variables, extra_prompt=note)
        exits[step.name] = add_step(graph, turn)
    evaluator = EvaluatorTurn(ctx, spec.step(ev), gen, finishes=not suffix)
    add_turn(graph, evaluator)

    def wire(name: str, deps: list[str]) -> None:
        sources = [exits[d] for d in deps]
        graph.add_edge(sources[0] if len(sources) == 1 else sources, name)

    for name in [s.name for s in spec.steps if s.name in prefix or s.name == gen]:
        if requires[name]:
            wire(name, requires[name])  # the generator's deps are all in prefix
        else:
            graph.add_edge(START, name)
    for name in [s.name for s in spec.steps if s.name in body and s.name != gen]:
        # only body predecessors: prefix steps do not run again, so a waiting edge on them
        # would never fire on the second iteration
        wire(name, [d for d in requires[name] if d in body])
    wire(ev, [d for d in requires[ev] if d in body] or [gen])
    roots = [name for name in suffix if not suffix_deps[name]]
    route = router(ev, gen, roots, evaluator.pass_score)
    add_router(graph, ev, route, [gen, END, *roots])
    for name in suffix:
        if suffix_deps[name]:
            wire(name, suffix_deps[name])
        if name in suffix_sinks:
            graph.add_edge(exits[name], END)
    return graph
