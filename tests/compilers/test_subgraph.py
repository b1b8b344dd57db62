"""A compiled spec used inside a hand-written LangGraph app: mounted directly as a node
(sharing state keys with the app) and called from a node function that maps state in/out."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from loopengt.compile import compile_spec
from loopengt.graph.state import gravest_status, merge_dicts
from tests.compilers.helpers import fake, spec_of, with_usage

BRIEF = """
    name: brief
    goal: Write a short brief.
    inputs: {{topic: {{}}}}
    agents: [{{name: writer}}]
    steps:
      - {{name: facts, prompt: "Facts about {{{{input.topic}}}}."}}
      - {{name: draft, depends_on: [facts], prompt: "A brief from: {{{{facts}}}}"}}
    policy: {policy}
"""


def brief_loop(model: Any, policy: str = "{max_turns: 5}", **kwargs: Any) -> Any:
    return compile_spec(spec_of(BRIEF.format(policy=policy)), models=model, **kwargs)


class SharedState(TypedDict, total=False):
    """The app's state: the loop's ``input``/``outputs``/``status`` keys, with the same
    reducers, plus a key of its own."""

    input: dict[str, Any]
    outputs: Annotated[dict[str, Any], merge_dicts]
    status: Annotated[str | None, gravest_status]
    headline: str


def mounted_app(loop: Any, **compile_kwargs: Any) -> Any:
    app = StateGraph(SharedState)
    app.add_node("prepare", lambda s: {"input": {"topic": s["input"]["topic"].strip()}})
    app.add_node("brief", loop)  # the compiled spec itself is the node
    app.add_node("finish", lambda s: {"headline": s["outputs"]["draft"].upper()})
    app.add_edge(START, "prepare")
    app.add_edge("prepare", "brief")
    app.add_edge("brief", "finish")
    app.add_edge("finish", END)
    return app.compile(**compile_kwargs)


def test_compiled_spec_mounted_directly_as_a_node() -> None:
    model = fake("owls hunt at night", "Owls: night hunters.")
    app = mounted_app(brief_loop(model))

    updates = list(app.stream({"input": {"topic": " owls "}}, stream_mode="updates"))
    state = app.invoke({"input": {"topic": " owls "}})

    assert [name for u in updates for name in u] == ["prepare", "brief", "finish"]
    assert state == {
        "input": {"topic": "owls"},
        "outputs": {"facts": "owls hunt at night", "draft": "Owls: night hunters."},
        "status": "completed",
        "headline": "OWLS: NIGHT HUNTERS.",
    }
    assert model.prompts()[:2] == ["Facts about owls.", "A brief from: owls hunt at night"]


def test_mounted_spec_streams_its_own_nodes_as_a_subgraph() -> None:
    app = mounted_app(brief_loop(fake("f", "d")))

    chunks = list(app.stream({"input": {"topic": "x"}}, stream_mode="updates", subgraphs=True))

    inner = [name for ns, update in chunks if ns for name in update]
    assert inner == ["facts", "draft"]
    assert all(ns[0].startswith("brief:") for ns, _ in chunks if ns)


def test_approval_inside_a_mounted_spec_is_resumed_through_the_app() -> None:
    model = fake("facts", "the brief")
    loop = brief_loop(model, "{max_turns: 5, approvals: [draft]}")
    app = mounted_app(loop, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "app-1"}}

    paused = app.invoke({"input": {"topic": "owls"}}, config)
    assert paused["__interrupt__"][0].value["step"] == "draft"
    assert "headline" not in paused
    state = app.invoke(Command(resume={"approved": True}), config)

    assert state["status"] == "completed"
    assert state["headline"] == "THE BRIEF"
    assert model.calls == 2  # facts is not re-run on resume


class AppState(TypedDict, total=False):
    """An app whose state has nothing in common with the loop's."""

    question: str
    answer: str
    loop_status: str
    loop_reason: str
    tokens: int


def wrapping_app(loop: Any) -> Any:
    def ask_loop(state: AppState) -> AppState:
        # map the app's state onto the loop's input, and the loop's result back
        result = loop.invoke({"input": {"topic": state["question"]}})
        return {
            "answer": result.get("outputs", {}).get("draft", ""),
            "loop_status": result["status"],
            "loop_reason": result.get("stop_reason") or "",
            "tokens": int(result["usage"]["total_tokens"]),
        }

    def fallback(state: AppState) -> AppState:
        return {"answer": f"(no answer: {state['loop_reason']})"}

    app = StateGraph(AppState)
    app.add_node("ask_loop", ask_loop)
    app.add_node("fallback", fallback)
    app.add_edge(START, "ask_loop")
    app.add_conditional_edges(
        "ask_loop", lambda s: END if s["loop_status"] == "completed" else "fallback"
    )
    app.add_edge("fallback", END)
    return app.compile()


def test_compiled_spec_called_from_a_node_function() -> None:
    model = fake(with_usage("owl facts", 4, 2), with_usage("owl brief", 6, 3))
    app = wrapping_app(brief_loop(model))

    state = app.invoke({"question": "owls"})

    assert state == {
        "question": "owls",
        "answer": "owl brief",
        "loop_status": "completed",
        "loop_reason": "",
        "tokens": 15,
    }


def test_a_stopped_loop_is_visible_to_the_app() -> None:
    app = wrapping_app(brief_loop(fake("facts", "never"), "{max_turns: 1}"))

    updates = list(app.stream({"question": "owls"}, stream_mode="updates"))
    state = app.invoke({"question": "owls"})

    assert [name for u in updates for name in u] == ["ask_loop", "fallback"]
    assert state["loop_status"] == "stopped"
    assert state["answer"] == "(no answer: max_turns: reached the limit of 1 turns)"
