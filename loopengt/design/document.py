"""LOOP_DESIGN.md: the designed loop explained for the person who will run and change it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopengt.spec import LoopSpec

if TYPE_CHECKING:
    from loopengt.design.architect import Design


def design_document(design: Design) -> str:
    spec = design.spec
    out = [f"# {spec.name}: loop design", ""]
    if design.fallback:
        out += [
            f"> **Fallback:** this loop is the built-in template `{design.template}`, not a "
            f"design by the model: {design.fallback}.",
            "> Adapt the prompts and agents below to the goal before relying on it.",
            "",
        ]
    out += ["## Goal", "", design.goal, ""]
    if spec.goal != design.goal:
        out += [f"The spec states it as: {spec.goal}", ""]
    if design.task_kind:
        out += [f"Kind of task: {design.task_kind}.", ""]
    out += ["## Pattern", "", f"`{spec.pattern}`. {design.rationale}".rstrip(), ""]
    out += ["## Agents", ""]
    for agent in spec.agents:
        line = f"- **{agent.name}**" + (f": {agent.description}" if agent.description else "")
        if agent.tools:
            line += f" (tools: {', '.join(agent.tools)})"
        out.append(line)
    out += ["", "## Steps", ""]
    out += _steps(spec) or ["The pattern derives the steps; see the graph below."]
    if spec.inputs:
        out += ["", "## Inputs", ""]
        for name, declared in spec.inputs.items():
            need = "" if declared.required else " (optional)"
            out.append(f"- `{name}`{need}: {declared.description or 'no description'}")
    out += ["", "## Verification", "", design.verification, ""]
    out += ["## Risks", ""] + [f"- {risk}" for risk in design.risks] + [""]
    out += ["## Graph", "", *_graph(spec)]
    out += [
        "## Next",
        "",
        "```bash",
        "loopengt validate loop.yaml",
        "loopengt run loop.yaml" + "".join(f" -i {name}=..." for name in _required(spec)),
        "```",
        "",
    ]
    return "\n".join(out)


def _steps(spec: LoopSpec) -> list[str]:
    lines = []
    for number, step in enumerate(spec.steps, start=1):
        who = f" ({step.agent})" if step.agent else ""
        after = f", after {', '.join(step.requires)}" if step.requires else ""
        what = step.description or _first_line(step.prompt or "")
        lines.append(f"{number}. **{step.name}**{who}{after}: {what}".rstrip(": "))
        if step.gate:
            lines.append(f"   - gate: {step.gate.kind}, on fail {step.gate.on_fail}")
    return lines


def _required(spec: LoopSpec) -> list[str]:
    return [name for name, declared in spec.inputs.items() if declared.required]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _graph(spec: LoopSpec) -> list[str]:
    """The Mermaid graph `loopengt graph` prints: the spec compiled, drawn by LangGraph. A
    spec can validate and still not compile (a function tool that does not import): the
    document then says why, and the spec is written all the same."""
    from loopengt.compile import compile_spec
    from loopengt.errors import LoopengtError

    try:
        mermaid = compile_spec(spec, check_models=False).get_graph().draw_mermaid()
    except LoopengtError as exc:
        return [f"The graph could not be drawn: {str(exc).splitlines()[0]}", ""]
    return ["```mermaid", mermaid.rstrip(), "```", ""]
