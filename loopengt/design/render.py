"""A LoopSpec as commented, readable YAML: what `design` and `template use` write.

One formatter for both, so a designed loop and a template look alike: the fields in the
order a reader wants them (what the loop is for, its inputs, who works, what they do, the
policy), a comment over each section saying what it means, prompts and instructions as
literal blocks, short lists on one line, and nothing that only repeats a default.
The built-in templates are stored in exactly this form (a test renders each and compares).
"""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

from loopengt.spec.models import LoopSpec

WIDTH = 100

# top-level keys in the order they are written; keys not listed follow in model order
ORDER = (
    "version",
    "name",
    "description",
    "goal",
    "pattern",
    "inputs",
    "defaults",
    "agents",
    "tools",
    "steps",
    "supervisor",
    "evaluator",
    "fan_out",
    "handoff",
    "graph",
    "policy",
    "rubric",
    "evals",
    "metadata",
)
ALWAYS = ("name", "goal", "pattern")  # written even when they hold the default

SECTION_COMMENTS = {
    "inputs": "Run inputs: prompts read them as {{input.NAME}}; pass them with -i NAME=VALUE.",
    "defaults": "Defaults for agents that name no model or temperature.",
    "agents": "Agents: who does the work. An agent without 'model' uses the configured default.",
    "tools": "Tools the agents may call (listed by name under each agent).",
    "steps": (
        "Steps: what each agent is asked. Prompts read {{goal}}, {{input.NAME}} and "
        "{{STEP}} (an earlier step's output)."
    ),
    "supervisor": "Supervisor: the agent that routes work to the workers until it answers FINISH.",
    "evaluator": "Evaluator-optimizer: the generator rewrites until the evaluator passes it.",
    "fan_out": "Fan-out: steps that run in parallel, then the step that joins them.",
    "handoff": "Handoff: the agent that starts; agents pass the conversation on by 'handoffs'.",
    "graph": "Custom graph: the entry step and the edges between steps.",
    "policy": "Policy: the limits the loop runs within, enforced inside the graph.",
    "rubric": "Rubric: what a good run achieves (read by evals and judges).",
    "evals": "Evals: how `loopengt eval` judges runs of this loop.",
    "metadata": "Metadata: free-form; 'purpose' and 'keywords' describe a template.",
}


def render_spec(spec: LoopSpec) -> str:
    """``spec`` as commented YAML that loads back to an equal LoopSpec."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for key in ALWAYS:
        data[key] = getattr(spec, key)
    keys = [k for k in ORDER if k in data] + [k for k in data if k not in ORDER]
    parts = [_header(spec)]
    for key in keys:
        block = _dump({key: data[key]})
        comment = SECTION_COMMENTS.get(key)
        if comment:
            parts.append("\n" + _comment(comment))
        parts.append(block)
    return "".join(parts)


def _header(spec: LoopSpec) -> str:
    title = f"{spec.name} ({spec.pattern})" + (f": {spec.description}" if spec.description else "")
    return _comment(title) + _comment(
        "Check: loopengt validate FILE · Run: loopengt run FILE -i NAME=VALUE"
    )


def _comment(text: str) -> str:
    lines = textwrap.wrap(" ".join(text.split()), WIDTH - 2) or [""]
    return "".join(f"# {line}\n" for line in lines)


class _Dumper(yaml.SafeDumper):
    """Block style, literal blocks for multi-line text, flow style for short scalar lists."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # PyYAML falls back to a quoted scalar itself when a literal block cannot hold the text
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    short = all(isinstance(item, str | int | float | bool) for item in data)
    short = short and sum(len(str(item)) + 2 for item in data) <= 60
    short = short and not any(isinstance(item, str) and "\n" in item for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=short)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=WIDTH, indent=2
    )
