"""Issue 5, Done-when: 20 `loopengt run` processes started at once on one `.loopengt/` all
complete; the run index lists 20 runs with intact traces, and SQLite never reports
"database is locked"."""

from __future__ import annotations

import json
from pathlib import Path

from tests.runs.helpers import finish, make_project, run_list, start_loopengt, write_spec
from tests.support.openai_server import ScriptedOpenAIServer

RUNS = 20

TWO_STEPS = """
    name: many
    goal: Greet a number, then confirm it.
    inputs:
      n: {description: Which run this is.}
    agents:
      - {name: worker, instructions: You answer briefly.}
    steps:
      - {name: greet, prompt: "hello {{input.n}}"}
      - {name: confirm, prompt: "confirm {{greet}}", depends_on: [greet]}
"""


def test_twenty_runs_at_once_share_one_database(
    tmp_path: Path, echo_server: ScriptedOpenAIServer
) -> None:
    project = make_project(tmp_path, echo_server.base_url)
    spec = write_spec(project, "many.yaml", TWO_STEPS)
    procs = {
        f"c{i:02d}": start_loopengt(
            project, "--debug", "run", spec, "--run-id", f"c{i:02d}", "-i", f"n={i}"
        )
        for i in range(RUNS)
    }
    finished = {run_id: (proc, *finish(proc, timeout=120)) for run_id, proc in procs.items()}

    for run_id, (proc, stdout, stderr) in finished.items():
        assert "database is locked" not in stderr + stdout, f"{run_id}: {stderr}"
        assert proc.returncode == 0, f"{run_id}: {stderr}"
        assert f"run {run_id}  completed" in stdout
    assert echo_server.request_count == 2 * RUNS
    assert echo_server.errors == []

    listed = run_list(project)
    assert sorted(r["run_id"] for r in listed) == sorted(procs)
    assert {r["status"] for r in listed} == {"completed"}
    assert {r["steps_done"] for r in listed} == {2}

    for i, run_id in enumerate(sorted(procs)):
        trace_file = project / ".loopengt" / "runs" / f"{run_id}.json"
        trace = json.loads(trace_file.read_text())
        assert trace["run_id"] == run_id
        assert trace["status"] == "completed"
        # no run saw another's state: each output echoes its own input
        assert trace["outputs"] == {
            "greet": f"echo: hello {i}",
            "confirm": f"echo: confirm echo: hello {i}",
        }


def test_many_runs_on_one_event_loop_share_one_database(tmp_path: Path) -> None:
    """What the MCP server and dataset evals do: `astart_run` many times on one loop. The
    run index's SQL waited for SQLite's write lock on the loop's own thread while another
    run's async checkpointer held it between two awaits: a deadlock until the busy timeout."""
    import asyncio

    from loopengt.runs.engine import RunOptions, astart_run, list_runs

    spec = write_spec(tmp_path, "many.yaml", TWO_STEPS)
    options = RunOptions(model="test:delay=0.01")

    async def all_runs() -> list[str]:
        runs = [
            astart_run(
                tmp_path / spec, inputs={"n": i}, run_id=f"a{i:02d}", options=options, root=tmp_path
            )
            for i in range(RUNS)
        ]
        results = await asyncio.wait_for(asyncio.gather(*runs), timeout=60)
        return [r.status for r in results]

    assert asyncio.run(all_runs()) == ["completed"] * RUNS
    records = list_runs(root=tmp_path)
    assert len(records) == RUNS and {r.steps_done for r in records} == {2}
