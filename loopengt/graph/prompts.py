"""What an agent is told: its system prompt, the goal and run input every turn starts from,
and the prompt of a step that declares none."""

from __future__ import annotations

import json
from typing import Any

from loopengt.graph.state import LoopState
from loopengt.serialization import as_text
from loopengt.spec.models import AgentRole, LoopSpec, StepSpec

# built once: json.dumps with options builds a new encoder on every call
INPUT_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def describe_agent(agent: AgentRole) -> str:
    """The system prompt of an agent: its instructions, else one built from its role."""
    if agent.instructions:
        return agent.instructions
    text = f"You are {agent.name}"
    text += f", {agent.description.strip()}" if agent.description else ""
    text += "."
    if agent.capabilities:
        text += " Your capabilities: " + ", ".join(agent.capabilities) + "."
    return text


def context_parts(spec: LoopSpec, state: LoopState) -> list[str]:
    """What every agent is told first: the goal and the run input."""
    parts = [f"Goal: {spec.goal}"]
    if state.get("input"):
        parts.append("Run input:\n" + INPUT_ENCODER.encode(state["input"]))
    return parts


def default_prompt(
    spec: LoopSpec, step: StepSpec, state: LoopState, variables: dict[str, Any]
) -> str:
    """A prompt for a step that has none: the goal, its description, the outputs of its
    dependencies and its pattern values ({{task}}, {{item}})."""
    parts = context_parts(spec, state)
    parts.insert(1, f"Your task ({step.name}): {step.description or step.name}")
    outputs = state.get("outputs") or {}
    for dep in step.requires:
        if dep in outputs:
            parts.append(f"Result of step {dep!r}:\n{as_text(outputs[dep])}")
    prompt = "\n\n".join(parts)
    for name in ("task", "item"):
        if variables.get(name) is not None:
            prompt += f"\n\nYour {name}: {as_text(variables[name])}"
    return prompt
