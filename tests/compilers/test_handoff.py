"""handoff with fake chat models: transfers, what the receiving agent sees (with and without
share_history), allowed targets, limits and the mermaid drawing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from loopengt.compile import compile_spec
from tests.compilers.helpers import RecordingFake, fake, spec_of
from tests.compilers.helpers import run_streamed as run

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed-0.1.0.yaml"

DESK = """
    name: desk
    goal: Answer the customer's question.
    pattern: handoff
    tools:
      - {name: add, kind: function, function: "tests.compilers.helpers:add"}
    agents:
      - name: triage
        description: Routes customers.
        tools: [add]
        handoffs: [billing]
      - name: billing
        description: Handles invoices.
      - name: tech
        description: Fixes bugs.
    steps: []
    handoff:
      entry: triage
      max_handoffs: 3
    policy:
      max_turns: 10
"""


def transfer(target: str, task: str, context: str = "", text: str = "") -> AIMessage:
    args = {"task": task, **({"context": context} if context else {})}
    call = {"name": f"transfer_to_{target}", "args": args, "id": f"call_{target}"}
    return AIMessage(content=text, tool_calls=[call])


def add_call(a: int, b: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": a, "b": b}, "id": "c1"}])


def desk(spec: str = DESK, **models: RecordingFake) -> Any:
    every = {"triage": fake("unused"), "billing": fake("unused"), "tech": fake("unused")}
    return compile_spec(spec_of(spec), models={**every, **models})


def triage_then_transfer() -> RecordingFake:
    """Triage uses its private tool, then hands off to billing with a task and context."""
    return fake(
        add_call(2, 40),
        transfer(
            "billing",
            "Refund invoice 7",
            "Customer was charged twice on May 3.",
            text="Routing you to billing.",
        ),
    )


def test_entry_agent_hands_off_and_the_second_agent_answers() -> None:
    triage = triage_then_transfer()
    billing = fake("Refund for invoice 7 issued.")
    order, state = run(desk(triage=triage, billing=billing), {"input": {"customer": "Ann"}})

    assert order == ["triage", "billing"]
    assert state["outputs"] == {
        "triage": "Routing you to billing.",
        "billing": "Refund for invoice 7 issued.",
    }
    assert state["status"] == "completed"
    assert state.get("stop_reason") is None
    assert state["active_agent"] == "billing"
    assert (
        state["task"]
        == "Refund invoice 7\n\nContext from triage:\nCustomer was charged twice on May 3."
    )
    assert state["turns"] == 2
    # the private tool ran inside triage's node: its result went back to triage's model
    tool_result = triage.received[1][-1]
    assert isinstance(tool_result, ToolMessage) and tool_result.content == "42"


def test_receiving_agent_sees_the_task_and_context_not_the_private_history() -> None:
    triage = triage_then_transfer()
    billing = fake("done")
    run(desk(triage=triage, billing=billing), {"input": {"customer": "Ann"}})

    seen = billing.received[0]
    assert [type(m) for m in seen] == [SystemMessage, HumanMessage]
    prompt = str(seen[1].content)
    assert "Goal: Answer the customer's question." in prompt
    assert '"customer": "Ann"' in prompt
    assert "Refund invoice 7" in prompt
    assert "Customer was charged twice on May 3." in prompt
    everything = " ".join(str(m.content) for m in seen)
    assert "Routing you to billing." not in everything
    assert "42" not in everything  # triage's tool result stayed private


def test_share_history_gives_the_receiving_agent_the_conversation() -> None:
    spec = DESK.replace("max_handoffs: 3", "max_handoffs: 3\n      share_history: true")
    triage = triage_then_transfer()
    billing = fake("done")
    run(desk(spec, triage=triage, billing=billing), {"input": {"customer": "Ann"}})

    seen = billing.received[0]
    assert isinstance(seen[0], SystemMessage) and isinstance(seen[-1], HumanMessage)
    history = seen[1:-1]
    assert any(isinstance(m, AIMessage) and m.content == "Routing you to billing." for m in history)
    assert any(isinstance(m, ToolMessage) and m.content == "42" for m in history)
    # every tool call in the shared history is answered, so it stays a valid conversation
    answered = {m.tool_call_id for m in history if isinstance(m, ToolMessage)}
    assert answered == {"c1", "call_billing"}
    assert "Refund invoice 7" in str(seen[-1].content)


def test_tools_offered_follow_handoffs_and_default_to_every_other_agent() -> None:
    triage = triage_then_transfer()
    billing = fake("done")
    run(desk(triage=triage, billing=billing), {"input": {}})

    assert triage.bound_tools == ["add", "transfer_to_billing"]
    assert billing.bound_tools == ["transfer_to_triage", "transfer_to_tech"]
    # the transfer tools say who each agent is; the system prompt does not list them again
    # (the embedded model then picked the agent listed last)
    system = str(triage.received[0][0].content)
    assert "call the transfer tool of that agent" in system
    assert "Handles invoices" not in system


def test_an_empty_handoffs_list_means_the_agent_answers() -> None:
    spec = DESK.replace(
        "        description: Handles invoices.\n",
        "        description: Handles invoices.\n        handoffs: []\n",
    )
    billing = fake("Refunded.")
    order, state = run(desk(spec, triage=triage_then_transfer(), billing=billing), {"input": {}})

    assert billing.bound_tools == []  # before: every other agent, so desks ping-ponged
    assert order == ["triage", "billing"]
    assert state["status"] == "completed"
    assert state["outputs"]["billing"] == "Refunded."


def test_transfer_to_an_agent_not_allowed_is_not_offered() -> None:
    triage = fake(transfer("tech", "fix it"), "I can only route to billing; here is my answer.")
    order, state = run(desk(triage=triage), {"input": {}})

    assert order == ["triage"]
    assert state["status"] == "completed"
    assert state["outputs"] == {"triage": "I can only route to billing; here is my answer."}
    error = triage.received[1][-1]
    assert isinstance(error, ToolMessage) and "unknown tool 'transfer_to_tech'" in str(
        error.content
    )


def test_max_handoffs_stops_and_keeps_outputs() -> None:
    spec = DESK.replace("max_handoffs: 3", "max_handoffs: 1")
    triage = fake(transfer("billing", "refund", text="to billing"))
    billing = fake(transfer("triage", "back to you", text="Refund needs approval."))
    order, state = run(desk(spec, triage=triage, billing=billing), {"input": {}})

    assert order == ["triage", "billing"]
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_handoffs: reached the limit of 1 handoffs"
    assert state["outputs"] == {"triage": "to billing", "billing": "Refund needs approval."}
    assert triage.calls == 1


def test_policy_max_turns_stops_a_ping_pong() -> None:
    spec = DESK.replace("      max_handoffs: 3\n", "").replace("max_turns: 10", "max_turns: 3")
    triage = fake(transfer("billing", "refund"))
    billing = fake(transfer("triage", "back"))
    order, state = run(desk(spec, triage=triage, billing=billing), {"input": {}})

    assert order == ["triage", "billing", "triage", "billing"]
    assert state["status"] == "stopped"
    assert state["stop_reason"] == "max_turns: reached the limit of 3 turns"
    assert state["turns"] == 3
    assert billing.calls == 1  # the halted turn made no model call
    # an empty transfer message still leaves a trace of what was handed off
    assert state["outputs"]["triage"] == "(handed off to billing: refund)"


def test_stop_condition_on_an_answer_reports_it() -> None:
    spec = DESK + "      stop_conditions:\n        - {contains: RESOLVED}\n"
    order, state = run(desk(spec, triage=fake("RESOLVED already")), {"input": {}})

    assert order == ["triage"]
    assert state["status"] == "completed"
    assert state["stop_reason"].startswith("stop_condition:")


def test_model_error_fails_the_run_cleanly() -> None:
    triage = RecordingFake(raises=[ValueError("bad request")])
    order, state = run(desk(triage=triage), {"input": {}})

    assert order == ["triage"]
    assert state["status"] == "failed"
    assert "bad request" in state["stop_reason"]
    assert state["errors"][0]["step"] == "triage"


def test_seed_spec_runs_as_handoff() -> None:
    text = SEED.read_text() + "pattern: handoff\n"
    researcher = fake(transfer("writer", "Write it", "Bees pollinate."))
    writer = fake("A post about bees.")
    graph = compile_spec(
        spec_of(text), models={"researcher": researcher, "writer": writer, "editor": fake("x")}
    )
    order, state = run(graph, {"input": {"topic": "bees"}})

    assert order == ["researcher", "writer"]
    assert state["outputs"]["writer"] == "A post about bees."
    assert state["status"] == "completed"
    # each agent's step description tells it its part
    assert "Your part: Collect the key facts" in researcher.prompts()[0]
    assert "Bees pollinate." in writer.prompts()[0]


def test_mermaid_shows_handoff_edges() -> None:
    mermaid = desk().get_graph().draw_mermaid()

    assert "__start__ --> triage;" in mermaid
    assert "triage -.-> billing;" in mermaid
    assert "triage -.-> tech;" not in mermaid
    assert "billing -.-> tech;" in mermaid
    assert "billing -.-> triage;" in mermaid
    assert "tech -.-> __end__;" in mermaid


def test_seed_pipeline_completes_when_the_model_takes_every_first_transfer(
    tmp_path: Path,
) -> None:
    # the default targets follow the steps: triage -> billing -> closer, and the closer
    # answers; before, billing was offered triage first and the run ping-ponged to max_turns
    from tests.runs.helpers import loopengt, write_spec
    from tests.spec.test_handoff_roles import SUPPORT

    write_spec(tmp_path, "support.yaml", SUPPORT)
    proc = loopengt(tmp_path, "run", "support.yaml", "--model", "test:transfers=yes", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "completed" and result["stop_reason"] is None
    assert list(result["outputs"]) == ["triage", "billing", "closer"]


def test_a_declared_back_edge_is_kept() -> None:
    from loopengt.providers.testing import TestModel
    from tests.spec.test_handoff_roles import SUPPORT

    looping = SUPPORT.replace(
        "{name: billing, description: handles invoices and refunds}",
        "{name: billing, description: handles invoices and refunds, handoffs: [triage]}",
    ).replace("policy: {max_turns: 12}", "policy: {max_turns: 5}")
    graph = compile_spec(spec_of(looping), models=TestModel(transfers=True))
    assert "triage" in graph.builder.nodes["billing"].ends  # the back-edge is offered
    state = graph.invoke({"input": {}})
    assert state["status"] == "stopped" and state["stop_reason"].startswith("max_turns")
    assert state["visits"] == {"triage": 3, "billing": 2}  # triage <-> billing, as declared


def test_a_model_without_tool_calling_hands_off_in_structured_output() -> None:
    """The embedded model cannot call tools: its agents hand off by naming the target in a
    structured answer, and the run goes on as with a transfer tool."""
    from typing import ClassVar

    from loopengt.providers.testing import ScriptedModel

    class NoTools(ScriptedModel):
        tool_calling: ClassVar[bool] = False
        json_schema_mode: ClassVar[bool] = True

    plain = DESK.replace("        tools: [add]\n", "")
    handed = {"answer": "", "handoff": "billing", "task": "Refund order 7", "context": "paid 2x"}
    triage = NoTools(replies=[json.dumps(handed)])
    billing = NoTools(replies=[json.dumps({"answer": "Refunded order 7.", "handoff": "none"})])
    graph = compile_spec(spec_of(plain), models={"triage": triage, "billing": billing})

    state = graph.invoke({"input": {}})

    assert state["status"] == "completed"
    assert state["outputs"]["billing"] == "Refunded order 7."
    assert state["outputs"]["triage"] == "(handed off to billing: Refund order 7)"
    asked = triage.requests[0]
    assert "set 'handoff' to its name" in str(asked[0].content)
    assert "- billing: Handles invoices." in str(asked[0].content)  # no tool says who
    assert "Refund order 7" in str(billing.requests[0][1].content)
    assert "paid 2x" in str(billing.requests[0][1].content)
