"""Every pattern under LangGraph's async API: the same results as under `invoke`, no node
work handed to a thread pool (many runs share one event loop), step timeouts by asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import pytest

from loopengt.compile import compile_spec
from loopengt.providers.testing import ScriptedModel, TestModel
from loopengt.spec import load_spec
from tests.compilers.helpers import spec_of

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
INPUTS: dict[str, Any] = {"topic": "owls", "files": ["one", "two"], "request": "refund"}


class NoThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor that fails the test if anything is handed to it."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"handed to a thread pool under ainvoke: {fn!r}")


def models_for(path: Path) -> Any:
    if "supervisor" in path.name:
        # TestModel routes to the first worker for ever; a lead that finishes after two
        lead = ScriptedModel(replies=['{"next": "researcher", "task": "t"}', '{"next": "FINISH"}'])
        spec = load_spec(path)
        return {a.name: (lead if i == 0 else TestModel()) for i, a in enumerate(spec.agents)}
    return TestModel()


def run_input(path: Path) -> dict[str, Any]:
    declared = load_spec(path).inputs
    return {"input": {k: v for k, v in INPUTS.items() if k in declared}}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_runs_the_same_under_ainvoke_without_a_thread(path: Path) -> None:
    expected = compile_spec(path, models=models_for(path)).invoke(run_input(path))

    async def main() -> Any:
        asyncio.get_running_loop().set_default_executor(NoThreads())
        return await compile_spec(path, models=models_for(path)).ainvoke(run_input(path))

    state = asyncio.run(main())
    assert state["status"] == expected["status"] == "completed"
    for key in ("outputs", "turns", "visits", "stop_reason"):
        assert state[key] == expected[key], key


def test_many_runs_share_one_event_loop() -> None:
    # 50 runs whose every call waits 0.2 s: with nodes on a thread pool (LangGraph's way
    # with sync nodes) they would queue for its few workers; here none is used at all
    graph = compile_spec(EXAMPLES[0], models=TestModel(delay=0.2))
    spec = load_spec(EXAMPLES[0])

    async def main() -> list[Any]:
        asyncio.get_running_loop().set_default_executor(NoThreads())
        payload = {"input": {k: "x" for k in spec.inputs}}
        return await asyncio.gather(*(graph.ainvoke(payload) for _ in range(50)))

    states = asyncio.run(main())
    assert [s["status"] for s in states] == ["completed"] * 50


def test_a_step_timeout_under_ainvoke_cancels_the_call_without_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = spec_of("""
        name: slow
        goal: Test.
        agents: [{name: w}]
        steps: [{name: a, agent: w}]
        policy: {step_timeout_seconds: 0.2, retry: {attempts: 2, backoff_seconds: 0}}
    """)
    graph = compile_spec(spec, models=TestModel(delay=30))

    def no_thread(self: threading.Thread) -> None:
        raise AssertionError("the sync path's timeout thread was started")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    state = asyncio.run(asyncio.wait_for(graph.ainvoke({"input": {}}), timeout=10))
    assert state["status"] == "stopped"
    assert "failed after 2 attempt(s): no answer within the step timeout" in state["stop_reason"]
    assert state["errors"][0]["timed_out"] is True
