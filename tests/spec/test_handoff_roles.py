"""handoff_targets: who an agent of the handoff pattern may hand off to.

Explicit ``handoffs`` as written; else, when the steps declare an order, the agents of the
steps right after the agent's own (the last one answers); else every other agent.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loopengt.spec import LoopSpec, load_spec, load_spec_text
from loopengt.spec.roles import handoff_entry, handoff_targets

SEED_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "seed-0.1.0.yaml"

# the seed schema: steps ordered by `dependencies`, and (as in the seed fixture) the last
# step lists every step whose output it reads
SUPPORT = """\
    version: "0.1.0"
    name: support
    goal: Resolve the customer's request.
    pattern: handoff
    agents:
      - {name: triage, description: decides who handles the request}
      - {name: billing, description: handles invoices and refunds}
      - {name: closer, description: writes the final answer}
    steps:
      - name: classify
        agent: triage
        dependencies: []
      - name: invoice
        agent: billing
        dependencies: [{step_name: classify}]
      - name: reply
        agent: closer
        dependencies: [{step_name: classify}, {step_name: invoice}]
    policy: {max_turns: 12}
    """


def spec_of(text: str) -> LoopSpec:
    return load_spec_text(textwrap.dedent(text), filename="loop.yaml")


def all_targets(spec: LoopSpec) -> dict[str, list[str]]:
    return {a.name: handoff_targets(spec, a.name) for a in spec.agents}


def first_offer_run(spec: LoopSpec, limit: int = 20) -> list[str]:
    """The agents a model that always takes the first transfer offered goes through."""
    active = [handoff_entry(spec)]
    while len(active) < limit and (targets := handoff_targets(spec, active[-1])):
        active.append(targets[0])
    return active


def test_seed_pipeline_hands_forward_and_the_last_agent_answers() -> None:
    spec = spec_of(SUPPORT)
    assert all_targets(spec) == {"triage": ["billing"], "billing": ["closer"], "closer": []}


def test_seed_pipeline_no_longer_ping_pongs() -> None:
    """Before, billing was offered triage first: triage, billing, triage, ... to max_turns."""
    assert first_offer_run(spec_of(SUPPORT)) == ["triage", "billing", "closer"]


def test_depends_on_orders_the_steps_too() -> None:
    spec = spec_of(
        """\
        name: support
        goal: Resolve the customer's request.
        pattern: handoff
        agents: [{name: triage}, {name: billing}, {name: closer}]
        steps:
          - {name: reply, agent: closer, depends_on: [invoice]}
          - {name: classify, agent: triage}
          - {name: invoice, agent: billing, depends_on: [classify]}
        handoff: {entry: triage, max_handoffs: 4}
        """
    )
    assert all_targets(spec) == {"triage": ["billing"], "billing": ["closer"], "closer": []}


def test_explicit_handoffs_keep_their_meaning_including_back_edges() -> None:
    text = SUPPORT.replace(
        "- {name: billing, description: handles invoices and refunds}",
        "- {name: billing, description: handles invoices and refunds, handoffs: [triage]}",
    )
    spec = spec_of(text)
    assert all_targets(spec) == {"triage": ["billing"], "billing": ["triage"], "closer": []}


def test_explicit_handoffs_may_skip_ahead() -> None:
    text = SUPPORT.replace(
        "- {name: triage, description: decides who handles the request}",
        "- {name: triage, handoffs: [closer, billing]}",
    )
    assert handoff_targets(spec_of(text), "triage") == ["closer", "billing"]


def test_several_steps_right_after_give_several_targets_in_step_order() -> None:
    spec = spec_of(
        """\
        name: support
        goal: Resolve the customer's request.
        pattern: handoff
        agents: [{name: triage}, {name: billing}, {name: tech}]
        steps:
          - {name: classify, agent: triage}
          - {name: fix, agent: tech, depends_on: [classify]}
          - {name: invoice, agent: billing, depends_on: [classify]}
        policy: {max_turns: 6}
        """
    )
    assert all_targets(spec) == {"triage": ["tech", "billing"], "billing": [], "tech": []}


def test_an_agent_with_consecutive_steps_hands_off_after_its_last() -> None:
    spec = spec_of(
        """\
        name: support
        goal: Resolve the customer's request.
        pattern: handoff
        agents: [{name: triage}, {name: billing}]
        steps:
          - {name: read, agent: triage}
          - {name: classify, agent: triage, depends_on: [read]}
          - {name: invoice, agent: billing, depends_on: [read, classify]}
        policy: {max_turns: 6}
        """
    )
    assert all_targets(spec) == {"triage": ["billing"], "billing": []}


def test_without_a_step_order_every_other_agent() -> None:
    """The old default: no steps, or steps without dependencies, say nothing about order."""
    no_steps = spec_of(
        """\
        name: desk
        goal: Resolve the customer's request.
        pattern: handoff
        agents: [{name: triage}, {name: billing}, {name: tech}]
        steps: []
        policy: {max_turns: 6}
        """
    )
    expected = {
        "triage": ["billing", "tech"],
        "billing": ["triage", "tech"],
        "tech": ["triage", "billing"],
    }
    assert all_targets(no_steps) == expected


def test_steps_without_dependencies_declare_no_order() -> None:
    spec = spec_of(
        """\
        name: desk
        goal: Resolve the customer's request.
        pattern: handoff
        agents: [{name: triage}, {name: billing}]
        steps:
          - {name: classify, agent: triage}
          - {name: invoice, agent: billing}
        policy: {max_turns: 6}
        """
    )
    assert all_targets(spec) == {"triage": ["billing"], "billing": ["triage"]}


def test_an_agent_without_a_step_stands_outside_the_order() -> None:
    closer = "- {name: closer, description: writes the final answer}"
    text = SUPPORT.replace(
        closer, closer + "\n      - {name: manager, description: takes escalations}"
    )
    spec = spec_of(text)
    assert handoff_targets(spec, "manager") == ["triage", "billing", "closer"]
    assert handoff_targets(spec, "triage") == ["billing"]  # nobody hands to manager by default


def test_the_seed_fixture_as_a_handoff_pipeline() -> None:
    spec = load_spec(SEED_FIXTURE).model_copy(update={"pattern": "handoff"})
    # edit depends on research and draft: the researcher hands to the writer, not the editor
    assert all_targets(spec) == {"researcher": ["writer"], "writer": ["editor"], "editor": []}


def test_single_agent_spec_has_no_one_to_hand_off_to() -> None:
    spec = spec_of(
        """\
        name: solo
        goal: Answer.
        pattern: handoff
        agents: [{name: agent}]
        steps: [{name: a}, {name: b, depends_on: [a]}]
        policy: {max_turns: 3}
        """
    )
    assert handoff_targets(spec, "agent") == []


def test_unknown_agent() -> None:
    with pytest.raises(ValueError, match="unknown agent 'nobody'"):
        handoff_targets(spec_of(SUPPORT), "nobody")
