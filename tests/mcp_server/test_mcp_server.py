"""`loopengt mcp serve` as a real subprocess, driven by the `mcp` SDK's client over stdio and
streamable HTTP: the ten tools, validation, runs on the test model (polled, replayed,
approved, resumed, scored), traces, templates, the resources and the architect prompt; 20
runs at once with a responsive `list_runs`; 500 malformed calls that neither crash the server
nor read outside its root; (slow) a run on the embedded local model that leaves the stdio
stream intact."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp.shared.exceptions import McpError

from tests.mcp_server.client import (
    ENDED,
    TOOLS,
    Session,
    dump,
    http_server,
    http_session,
    run,
    stdio_session,
    text_of,
)
from tests.runs.helpers import (
    REPO,
    finish,
    loopengt,
    result_json,
    start_loopengt,
    wait_until,
)

BRIEF = (REPO / "examples" / "research-brief.yaml").read_text(encoding="utf-8")
BRIEF_STEPS = {"facts", "draft", "title"}
TOPIC = {"topic": "owls"}

# `steps[0].agent` names no agent: line 7, column 12 (where `nobody` starts)
BAD_SPEC = """\
name: bad
goal: Say hello.
agents:
  - name: greeter
steps:
  - name: hello
    agent: nobody
    prompt: "Say hello."
"""

APPROVAL_SPEC = """\
name: release-notes
goal: Write release notes and publish them once a person agrees.
agents:
  - {name: writer, instructions: You write release notes.}
steps:
  - {name: draft, prompt: "draft the notes"}
  - {name: publish, prompt: "publish {{draft}}", depends_on: [draft]}
policy: {approvals: [publish], max_turns: 5}
"""

TEMPLATES = {
    "planner-executor",
    "supervisor-workers",
    "reviewer-retry",
    "handoff-loop",
    "research-architect",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The server's --root: a project folder with the research-brief spec in it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "brief.yaml").write_text(BRIEF, encoding="utf-8")
    return project


def stdio(root: Path, flow: Any, timeout: float = 120) -> Any:
    """Run ``flow(session)`` against a new stdio server; the stream must stay clean."""

    async def main() -> Any:
        async with stdio_session(root) as session:
            result = await flow(session)
            session.assert_stream_clean()
            return result

    return run(main(), timeout)


# -- tools, resources, prompt --------------------------------------------------------------


def test_lists_the_ten_tools_each_with_a_description_and_an_input_schema(root: Path) -> None:
    async def flow(s: Session) -> None:
        tools = {t.name: t for t in (await s.session.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, tool in tools.items():
            assert tool.description and tool.description.strip(), name
            assert tool.inputSchema.get("type") == "object", (name, tool.inputSchema)
            assert isinstance(tool.inputSchema.get("properties"), dict), name
        required = {name: set(t.inputSchema.get("required", [])) for name, t in tools.items()}
        assert required["get_run"] == {"run_id"}
        assert required["design_loop"] == {"goal"}
        assert required["approve_run"] == {"run_id", "approve"}
        assert required["list_templates"] == set()
        assert required["validate_loop"] == set()  # exactly one of spec_yaml / path
        props = tools["run_loop"].inputSchema["properties"]
        assert {"spec_yaml", "path", "inputs", "model", "replay", "run_id", "wait"} <= set(props)
        assert set(tools["get_trace"].inputSchema["properties"]["format"]["enum"]) == {
            "markdown",
            "json",
            "jsonl",
        }

    stdio(root, flow)


def test_resources_schema_template_and_the_architect_prompt(root: Path) -> None:
    async def flow(s: Session) -> None:
        resources = {str(r.uri) for r in (await s.session.list_resources()).resources}
        assert "loopengt://schema" in resources
        templates = {
            t.uriTemplate for t in (await s.session.list_resource_templates()).resourceTemplates
        }
        assert {"loopengt://templates/{name}", "loopengt://runs/{run_id}/trace"} <= templates

        schema_text = (await s.session.read_resource("loopengt://schema")).contents[0]
        schema = json.loads(schema_text.text)  # type: ignore[union-attr]
        assert {"name", "steps"} <= set(schema["properties"])

        for name in TEMPLATES:
            got = (await s.session.read_resource(f"loopengt://templates/{name}")).contents[0]
            spec = yaml.safe_load(got.text)  # type: ignore[union-attr]
            assert spec["name"] and spec["steps"], name
            checked = await s.ok("validate_loop", spec_yaml=got.text)  # type: ignore[union-attr]
            assert checked["ok"], (name, checked)

        prompts = {p.name: p for p in (await s.session.list_prompts()).prompts}
        assert "architect" in prompts
        args = {a.name: a for a in prompts["architect"].arguments or []}
        assert args["goal"].required
        goal = f"Triage flaky CI jobs {uuid.uuid4().hex[:8]}"
        prompt = await s.session.get_prompt("architect", {"goal": goal})
        texts = [m.content.text for m in prompt.messages]  # type: ignore[union-attr]
        assert any(goal in t for t in texts), texts
        assert sum(len(t) for t in texts) > len(goal) + 200  # the architect's instructions too

    stdio(root, flow)


def test_list_templates_gives_the_five_built_ins(root: Path) -> None:
    async def flow(s: Session) -> None:
        rows = {t["name"]: t for t in (await s.ok("list_templates"))["templates"]}
        assert set(rows) >= TEMPLATES
        for name in TEMPLATES:
            row = rows[name]
            assert row["pattern"] and row["purpose"] and row["source"], row
            assert row["problem"] is None, row
        assert rows["reviewer-retry"]["pattern"] == "evaluator_optimizer"
        assert rows["supervisor-workers"]["pattern"] == "supervisor_worker"

    stdio(root, flow)


# -- validation ----------------------------------------------------------------------------


def test_validate_reports_problems_with_line_column_and_path_and_accepts_a_good_spec(
    root: Path,
) -> None:
    (root / "specs").mkdir()
    (root / "specs" / "bad.yaml").write_text(BAD_SPEC, encoding="utf-8")

    async def flow(s: Session) -> None:
        for args in ({"spec_yaml": BAD_SPEC}, {"path": "specs/bad.yaml"}):
            result = await s.ok("validate_loop", **args)
            assert result["ok"] is False, result
            problems = result["problems"]
            assert problems, result
            problem = next(p for p in problems if p["path"] == "steps[0].agent")
            assert (problem["line"], problem["column"]) == (7, 12), problem
            assert "nobody" in problem["message"]
            assert problem["text"].endswith(f"7:12: steps[0].agent: {problem['message']}"), problem
            if "path" in args:
                assert problem["text"].startswith("specs/bad.yaml:7:12:"), problem

        broken = await s.ok("validate_loop", spec_yaml="name: x\nsteps: [unclosed\n")
        assert broken["ok"] is False and broken["problems"][0]["line"] >= 1, broken

        for args in ({"spec_yaml": BRIEF}, {"path": "brief.yaml"}):
            good = await s.ok("validate_loop", **args)
            assert good == {
                "ok": True,
                "name": "research-brief",
                "pattern": "sequential",
                "problems": [],
                "warnings": [],
            }

        # exactly one of spec_yaml and path
        assert "exactly one" in await s.error("validate_loop")
        assert "exactly one" in await s.error("validate_loop", spec_yaml=BRIEF, path="brief.yaml")
        missing = await s.error("validate_loop", path="nope.yaml")
        assert "nope.yaml" in missing

    stdio(root, flow)


def test_design_loop_on_the_test_model_returns_a_valid_spec(root: Path) -> None:
    async def flow(s: Session) -> None:
        designed = await s.ok(
            "design_loop", goal="Review a pull request and write comments", model="test"
        )
        assert set(designed) >= {
            "spec_yaml",
            "design_doc",
            "pattern",
            "fallback",
            "template",
            "attempts",
        }
        assert designed["design_doc"].strip()
        checked = await s.ok("validate_loop", spec_yaml=designed["spec_yaml"])
        assert checked["ok"], checked
        assert checked["pattern"] == designed["pattern"]
        if designed["fallback"] is not None:  # the test model's spec was not good enough
            assert designed["template"] in TEMPLATES
        too_long = await s.error("design_loop", goal="x" * 5000, model="test")
        assert "4,000" in too_long or "4000" in too_long, too_long

    stdio(root, flow)


# -- runs ----------------------------------------------------------------------------------


def test_run_loop_returns_at_once_then_get_run_trace_list_and_eval(root: Path) -> None:
    async def flow(s: Session) -> None:
        started_at = time.monotonic()
        started = await s.ok("run_loop", spec_yaml=BRIEF, inputs=TOPIC, model="test")
        took = time.monotonic() - started_at
        assert took < 1.0, f"run_loop answered after {took:.2f}s"
        assert started["status"] == "running" and started["run_id"], started
        run_id = started["run_id"]

        info = await s.wait_for_status(run_id, {"completed"})
        assert info["run_id"] == run_id and info["spec"] == "research-brief"
        assert set(info["outputs"]) == BRIEF_STEPS, info
        assert all(isinstance(v, str) and v for v in info["outputs"].values()), info
        assert info["steps_completed"] == 3 and info["turns"] >= 3, info
        assert info["error"] is None and info["pending_approval"] is None, info
        assert info["current_step"] is None, info
        assert info["started_at"] and info["ended_at"] >= info["started_at"], info

        listed = await s.ok("list_runs")
        row = next(r for r in listed["runs"] if r["run_id"] == run_id)
        assert row["status"] == "completed" and row["spec"] == "research-brief", row
        assert row["steps"] == 3 and row["tokens"] > 0, row
        only = await s.ok("list_runs", status="completed", limit=1)
        assert [r["run_id"] for r in only["runs"]] == [run_id]
        assert (await s.ok("list_runs", status="failed"))["runs"] == []

        # the trace: the tool in three formats, and the resource
        markdown = await s.ok("get_trace", run_id=run_id)
        assert markdown["format"] == "markdown" and markdown["run_id"] == run_id
        assert all(step in markdown["text"] for step in BRIEF_STEPS), markdown["text"]
        as_json = json.loads((await s.ok("get_trace", run_id=run_id, format="json"))["text"])
        kinds = {e["kind"] for e in as_json["events"]}
        assert {"run_start", "step_start", "step_end", "run_end"} <= kinds, kinds
        lines = (await s.ok("get_trace", run_id=run_id, format="jsonl"))["text"].splitlines()
        assert lines and all(json.loads(line) for line in lines)
        resource = await s.session.read_resource(f"loopengt://runs/{run_id}/trace")
        from_resource = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
        assert from_resource["events"] == as_json["events"]

        # metrics without a judge (no model call)
        scored = await s.ok("eval_run", run_id=run_id, judge=False)
        assert scored["run_id"] == run_id and scored["judgements"] == [], scored
        metrics = scored["metrics"]
        assert metrics["status"] == "completed", metrics
        assert (metrics["steps_total"], metrics["steps_completed"]) == (3, 3), metrics
        assert metrics["model_calls"] == 3 and metrics["turns"] >= 3, metrics

        # a run id of the caller's choosing; taken ids are refused
        mine = await s.ok("run_loop", path="brief.yaml", inputs=TOPIC, model="test", run_id="r-1")
        assert mine == {"run_id": "r-1", "status": "running"}
        taken = await s.error(
            "run_loop", path="brief.yaml", inputs=TOPIC, model="test", run_id=run_id
        )
        assert run_id in taken
        await s.wait_for_status("r-1", {"completed"})

        # wait=true answers with the final status
        waited = await s.ok("run_loop", spec_yaml=BRIEF, inputs=TOPIC, model="test", wait=True)
        assert waited["status"] == "completed", waited

        # unknown runs are tool errors naming the run
        for tool in ("get_run", "get_trace", "eval_run", "resume_run"):
            args: dict[str, Any] = {"run_id": "no-such-run"}
            if tool == "eval_run":
                args["judge"] = False
            assert "no-such-run" in await s.error(tool, **args), tool

    stdio(root, flow)


def test_run_loop_replays_a_cassette_recorded_by_the_cli(root: Path) -> None:
    recorded = loopengt(
        root, "run", "brief.yaml", "-i", "topic=owls", "--model", "test", "--record",
        "tapes/brief.yaml", "--run-id", "recorded", "--json",
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    expected = result_json(recorded)["outputs"]
    assert set(expected) == BRIEF_STEPS
    assert (root / "tapes" / "brief.yaml").is_file()

    async def flow(s: Session) -> None:
        started = await s.ok("run_loop", path="brief.yaml", inputs=TOPIC, replay="tapes/brief.yaml")
        info = await s.wait_for_status(started["run_id"], ENDED)
        assert info["status"] == "completed", info
        assert info["outputs"] == expected
        # the recorded run is in the same project
        assert (await s.ok("get_run", run_id="recorded"))["outputs"] == expected
        # a cassette outside the root is refused before anything runs
        outside = await s.error("run_loop", path="brief.yaml", inputs=TOPIC, replay="../tape.yaml")
        assert "tape.yaml" in outside
        # a missing cassette: an error, or a run that fails with a reason
        result = await s.call(
            "run_loop", {"path": "brief.yaml", "inputs": TOPIC, "replay": "tapes/none.yaml"}
        )
        if not result.isError:
            failed = await s.wait_for_status(result.structuredContent["run_id"], ENDED)  # type: ignore[index]
            assert failed["status"] == "failed" and failed["error"], failed

    stdio(root, flow)


def test_an_approval_waits_then_approve_completes_and_reject_rejects(root: Path) -> None:
    async def flow(s: Session) -> None:
        first = await s.ok("run_loop", spec_yaml=APPROVAL_SPEC, model="test")
        waiting = await s.wait_for_status(first["run_id"], {"waiting_approval"})
        assert set(waiting["outputs"]) == {"draft"}, waiting
        assert waiting["pending_approval"] is not None, waiting
        assert "publish" in json.dumps(waiting["pending_approval"]), waiting
        answered = await s.ok("approve_run", run_id=first["run_id"], approve=True, comment="ok")
        assert answered == {"run_id": first["run_id"], "status": "running"}
        done = await s.wait_for_status(first["run_id"], ENDED)
        assert done["status"] == "completed", done
        assert set(done["outputs"]) == {"draft", "publish"}, done
        assert done["pending_approval"] is None
        # a run that does not wait cannot be approved
        again = await s.error("approve_run", run_id=first["run_id"], approve=True)
        assert first["run_id"] in again

        second = await s.ok("run_loop", spec_yaml=APPROVAL_SPEC, model="test")
        await s.wait_for_status(second["run_id"], {"waiting_approval"})
        await s.ok("approve_run", run_id=second["run_id"], approve=False, comment="not yet")
        rejected = await s.wait_for_status(second["run_id"], ENDED)
        assert rejected["status"] == "rejected", rejected
        assert "publish" not in rejected["outputs"], rejected

    stdio(root, flow)


def test_resume_run_finishes_a_run_killed_mid_way(root: Path) -> None:
    proc = start_loopengt(
        root, "run", "brief.yaml", "-i", "topic=owls", "--model", "test:delay=1",
        "--run-id", "killed",
    )  # fmt: skip
    jsonl = root / ".loopengt" / "runs" / "killed.jsonl"
    try:
        wait_until(
            # the second step starts once the first one's checkpoint is on disk
            # (durability="sync"); its step_end event comes before that checkpoint
            lambda: (
                jsonl.is_file() and jsonl.read_text(encoding="utf-8").count('"step_start"') >= 2
            ),
            timeout=60,
            what="the second step to start",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        finish(proc)

    async def flow(s: Session) -> None:
        before = await s.ok("get_run", run_id="killed")
        assert before["status"] == "interrupted", before
        assert 1 <= before["steps_completed"] < 3, before
        resumed = await s.ok("resume_run", run_id="killed")
        assert resumed == {"run_id": "killed", "status": "running"}
        done = await s.wait_for_status("killed", ENDED)
        assert done["status"] == "completed", done
        assert set(done["outputs"]) == BRIEF_STEPS
        assert before["outputs"].items() <= done["outputs"].items()  # not re-run

    stdio(root, flow)


# -- streamable HTTP -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Use `streamable_http_client`:DeprecationWarning")
def test_the_core_flow_over_streamable_http(root: Path) -> None:
    async def flow(url: str) -> str:
        async with http_session(url) as s:
            tools = (await s.session.list_tools()).tools
            assert {t.name for t in tools} == TOOLS
            assert all(t.description for t in tools)
            started_at = time.monotonic()
            started = await s.ok("run_loop", spec_yaml=BRIEF, inputs=TOPIC, model="test")
            assert time.monotonic() - started_at < 1.0
            info = await s.wait_for_status(started["run_id"], {"completed"})
            assert set(info["outputs"]) == BRIEF_STEPS
            resource = await s.session.read_resource(f"loopengt://runs/{info['run_id']}/trace")
            trace = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            assert any(e["kind"] == "run_end" for e in trace["events"])
            assert "title" in (await s.ok("get_trace", run_id=info["run_id"]))["text"]
            s.assert_stream_clean()
            run_id: str = info["run_id"]
        # a second connection to the same server sees the run
        async with http_session(url) as s:
            listed = await s.ok("list_runs")
            assert run_id in {r["run_id"] for r in listed["runs"]}
        return run_id

    with http_server(root) as url:
        run_id = run(flow(url), 120)
    assert (root / ".loopengt" / "runs" / f"{run_id}.json").is_file()


# -- load ----------------------------------------------------------------------------------


def test_twenty_runs_at_once_complete_and_list_runs_stays_under_200_ms(root: Path) -> None:
    async def flow(s: Session) -> None:
        await s.ok("list_runs")  # warm: the first call imports the run index
        starts = await asyncio.gather(
            *(
                s.ok("run_loop", path="brief.yaml", inputs=TOPIC, model="test:delay=0.05")
                for _ in range(20)
            )
        )
        ids = [r["run_id"] for r in starts]
        assert len(set(ids)) == 20 and all(r["status"] == "running" for r in starts), starts

        timings: list[float] = []
        while True:  # list_runs, round trip, while the runs go on
            sent = time.monotonic()
            listed = await s.ok("list_runs", limit=50)
            timings.append(time.monotonic() - sent)
            statuses = {r["run_id"]: r["status"] for r in listed["runs"]}
            if all(statuses.get(i) in ENDED for i in ids):
                break
            assert len(timings) < 2000, "the runs did not end"
            await asyncio.sleep(0.01)
        assert len(timings) >= 3, f"the runs ended before list_runs was measured: {timings}"
        assert max(timings) < 0.2, (
            f"list_runs took {max(timings):.3f}s at worst over {len(timings)} calls "
            f"(median {sorted(timings)[len(timings) // 2]:.3f}s)"
        )
        for run_id in ids:
            info = await s.ok("get_run", run_id=run_id)
            assert info["status"] == "completed", info
            assert set(info["outputs"]) == BRIEF_STEPS, info

    stdio(root, flow, timeout=180)


# -- robustness ----------------------------------------------------------------------------


def malformed_calls(secret: Path) -> list[tuple[str, dict[str, Any]]]:
    """Calls a confused or hostile client could make: each must fail cleanly."""
    paths = [
        "../../etc/passwd", "/etc/passwd", "../SECRET", str(secret), "link.yaml",
        "outside/SECRET", "./../SECRET", "sub/../../SECRET", "~/SECRET", "%2e%2e/SECRET",
        "..", ".", "/", "", "\x00", "brief.yaml\x00../SECRET", "..\\SECRET", "file:///etc/passwd",
        "a" * 5000, "/proc/self/environ", "/dev/zero", ".loopengt/../../SECRET",
    ]  # fmt: skip
    run_ids = [
        "../x", "..", ".", "a/b", "", "/etc/passwd", "../SECRET", str(secret), "x" * 200,
        "a\x00b", " ", "-rf", "run id", "r1;rm -rf /", "%2e%2e", "..\\x", "a/../../SECRET",
    ]  # fmt: skip
    calls: list[tuple[str, dict[str, Any]]] = []
    for p in paths:
        calls += [
            ("validate_loop", {"path": p}),
            ("run_loop", {"path": p, "model": "test"}),
            ("run_loop", {"spec_yaml": BRIEF, "inputs": TOPIC, "model": "test", "replay": p}),
        ]
    for rid in run_ids:
        calls += [
            ("get_run", {"run_id": rid}),
            ("get_trace", {"run_id": rid, "format": "json"}),
            ("eval_run", {"run_id": rid, "judge": False}),
            ("approve_run", {"run_id": rid, "approve": True}),
            ("resume_run", {"run_id": rid}),
            ("run_loop", {"spec_yaml": BRIEF, "inputs": TOPIC, "model": "test", "run_id": rid}),
        ]
    calls += [
        # wrong types and missing arguments
        ("validate_loop", {}),
        ("validate_loop", {"spec_yaml": 123}),
        ("validate_loop", {"spec_yaml": ["name: x"]}),
        ("validate_loop", {"path": {"a": 1}}),
        ("validate_loop", {"spec_yaml": BRIEF, "path": "brief.yaml"}),
        ("validate_loop", {"spec_yaml": "!!python/object/apply:os.system ['touch PWNED']"}),
        ("validate_loop", {"spec_yaml": "name: [unclosed"}),
        ("validate_loop", {"spec_yaml": ""}),
        ("validate_loop", {"spec_yaml": "\x00\xff\ufffe"}),
        ("run_loop", {}),
        ("run_loop", {"spec_yaml": BRIEF, "inputs": "topic=owls", "model": "test"}),
        ("run_loop", {"spec_yaml": BRIEF, "inputs": [1, 2], "model": "test"}),
        ("run_loop", {"spec_yaml": BRIEF, "inputs": TOPIC, "model": 5}),
        ("run_loop", {"spec_yaml": BRIEF, "inputs": TOPIC, "model": "nope:xyz"}),
        ("run_loop", {"spec_yaml": BRIEF, "inputs": TOPIC, "model": "test:delay=-1"}),
        ("run_loop", {"spec_yaml": BRIEF, "inputs": TOPIC, "model": "test", "wait": "soon"}),
        ("run_loop", {"spec_yaml": BRIEF, "model": "test"}),  # the required input is missing
        ("run_loop", {"spec_yaml": "!!python/object/apply:os.system ['touch PWNED']"}),
        ("run_loop", {"spec_yaml": BAD_SPEC, "model": "test"}),
        ("get_run", {}),
        ("get_run", {"run_id": 5}),
        ("get_run", {"run_id": None}),
        ("get_run", {"run_id": ["a"]}),
        ("list_runs", {"limit": "many"}),
        ("list_runs", {"limit": -5}),
        ("list_runs", {"limit": 10**15}),
        ("list_runs", {"status": 3}),
        ("list_runs", {"status": "bogus"}),
        ("list_runs", {"status": "../x"}),
        ("get_trace", {}),
        ("get_trace", {"run_id": "x", "format": "pdf"}),
        ("get_trace", {"run_id": "x", "format": 1}),
        ("eval_run", {}),
        ("eval_run", {"run_id": "nope", "judge": "yes"}),
        ("eval_run", {"run_id": "nope", "judge": False, "judge_model": 1}),
        ("approve_run", {}),
        ("approve_run", {"run_id": "nope"}),
        ("approve_run", {"run_id": "nope", "approve": "maybe"}),
        ("approve_run", {"run_id": "nope", "approve": True, "comment": 5}),
        ("resume_run", {}),
        ("resume_run", {"run_id": 1}),
        ("design_loop", {}),
        ("design_loop", {"goal": 5}),
        ("design_loop", {"goal": "x" * 5000}),
        ("design_loop", {"goal": "g", "attempts": "three", "model": "test"}),
        ("design_loop", {"goal": "g", "pattern": 7, "model": "test"}),
        ("list_templates", {"extra": "../SECRET"}),
        # unknown tools
        ("nope", {}),
        ("", {}),
        ("../run_loop", {"path": "../SECRET"}),
        ("run_loop ", {}),
        ("RUN_LOOP", {}),
        ("list_templates/../x", {}),
    ]
    return calls


def test_500_malformed_calls_fail_cleanly_and_read_nothing_outside_the_root(
    tmp_path: Path, root: Path
) -> None:
    token = f"SECRET-{uuid.uuid4().hex}"
    secret = tmp_path / "SECRET"
    secret.write_text(
        f"name: {token}\ngoal: {token}\nsteps:\n  - {{name: s, prompt: {token}}}\n",
        encoding="utf-8",
    )
    (root / "link.yaml").symlink_to(secret)
    (root / "outside").symlink_to(tmp_path, target_is_directory=True)
    before = {p.name for p in tmp_path.iterdir()}

    calls = malformed_calls(secret)
    one_off = [  # sent once each: 10 MB
        ("validate_loop", {"spec_yaml": "a" * 10_000_000}),
        ("run_loop", {"spec_yaml": "name: x\n# " + "a" * 10_000_000, "model": "test"}),
        ("validate_loop", {"path": "a" * 10_000_000}),
    ]
    repeated = [calls[i % len(calls)] for i in range(500 - len(one_off))]
    assert len(calls) >= 150

    async def flow(s: Session) -> dict[str, int]:
        problems: list[str] = []
        counts = {"error": 0, "clean": 0}
        for tool, args in [*one_off, *repeated]:
            label = f"{tool}({json.dumps(args)[:120]})"
            try:
                result = await s.call(tool, args)
            except Exception as exc:  # a crash or a protocol error: the server broke
                problems.append(f"{label}: raised {type(exc).__name__}: {exc}")
                if len(problems) > 5:
                    break
                continue
            text = dump(result)
            if token in text:
                problems.append(f"{label}: the planted secret leaked: {text[:300]}")
            if "root:x:0:0" in text:
                problems.append(f"{label}: /etc/passwd leaked: {text[:300]}")
            if result.isError:
                counts["error"] += 1
                if not text_of(result).strip():
                    problems.append(f"{label}: an error without a message")
            else:
                counts["clean"] += 1
                if not isinstance(result.structuredContent, dict):
                    problems.append(f"{label}: no structured result: {result.content}")

        for uri in (
            "loopengt://runs/..%2F..%2FSECRET/trace",
            "loopengt://runs/../trace",
            "loopengt://runs/a/b/trace",
            "loopengt://templates/..%2F..%2FSECRET",
            "loopengt://templates/../../SECRET",
            "loopengt://templates/nope",
            f"file://{secret}",
        ):
            try:
                got = await s.session.read_resource(uri)
                text = json.dumps(got.model_dump(mode="json"))
            except McpError as exc:
                text = str(exc)
            except Exception as exc:
                problems.append(f"read_resource({uri}): raised {type(exc).__name__}: {exc}")
                continue
            if token in text:
                problems.append(f"read_resource({uri}): the planted secret leaked: {text[:300]}")

        # still answering
        assert {t.name for t in (await s.session.list_tools()).tools} == TOOLS
        assert (await s.ok("validate_loop", path="brief.yaml"))["ok"]
        assert not problems, "\n".join(problems)
        return counts

    counts = stdio(root, flow, timeout=300)
    assert counts["error"] + counts["clean"] == 500
    assert counts["error"] > 400, counts  # nearly everything is refused
    assert not (root / "PWNED").exists() and not (tmp_path / "PWNED").exists()
    created = {p.name for p in tmp_path.iterdir()} - before - {"project-server.log"}
    assert not created, f"files appeared outside the root: {created}"
    assert token in secret.read_text(encoding="utf-8")  # untouched


def test_loopengt_errors_are_one_line_messages(root: Path) -> None:
    """The server's own refusals: one line, naming what was wrong."""

    async def flow(s: Session) -> None:
        for tool, args, needle in [
            ("validate_loop", {"path": "../../etc/passwd"}, "etc/passwd"),
            ("validate_loop", {"path": "/etc/passwd"}, "/etc/passwd"),
            (
                "run_loop",
                {"path": "brief.yaml", "inputs": TOPIC, "model": "test", "run_id": "../x"},
                "../x",
            ),
            ("get_run", {"run_id": "a/b"}, "a/b"),
            ("get_run", {"run_id": "never-ran"}, "never-ran"),
            ("resume_run", {"run_id": ".."}, ".."),
            ("validate_loop", {"spec_yaml": "a" * 10_000_000}, "MB"),
            ("run_loop", {"spec_yaml": BRIEF, "model": "nope:xyz", "inputs": TOPIC}, "nope"),
        ]:
            message = await s.error(tool, **args)
            assert needle in message, (tool, args, message)
            assert len(message.strip().splitlines()) == 1, (tool, message)
            assert "Traceback" not in message

    stdio(root, flow)


def test_argument_errors_are_one_line_messages(root: Path) -> None:
    """Wrong types, missing arguments and unknown tools: also a one-line message each."""

    async def flow(s: Session) -> None:
        for tool, args in [
            ("get_run", {}),
            ("get_run", {"run_id": 5}),
            ("list_runs", {"limit": "many"}),
            ("get_trace", {"run_id": "x", "format": "pdf"}),
            ("approve_run", {"run_id": "x"}),
            ("nope", {}),
        ]:
            message = await s.error(tool, **args)
            if len(message.strip().splitlines()) != 1:
                long.append(f"{tool}({args}): {message!r}")
        assert not long, "errors of more than one line:\n" + "\n".join(long)

    long: list[str] = []
    stdio(root, flow)


# -- the embedded local model --------------------------------------------------------------

HELLO_SPEC = """\
name: hello-local
goal: Greet the user in one sentence.
agents:
  - {name: greeter, instructions: You answer in one short sentence.}
steps:
  - {name: hello, prompt: "Say hello to a new user in one short sentence."}
policy: {max_turns: 3}
"""


@pytest.mark.slow
def test_a_run_on_the_local_model_leaves_the_stdio_stream_intact(root: Path) -> None:
    from loopengt.providers.local import local_model_available

    if not local_model_available():
        pytest.skip("the local model extra is not installed")

    async def flow(s: Session) -> None:
        started = await s.ok("run_loop", spec_yaml=HELLO_SPEC, model="local")
        info = await s.wait_for_status(started["run_id"], ENDED, timeout=600)
        assert info["status"] == "completed", info
        assert isinstance(info["outputs"]["hello"], str) and info["outputs"]["hello"].strip()
        # the session still works: llama.cpp wrote nothing on the protocol's stdout
        s.assert_stream_clean()
        assert {t.name for t in (await s.session.list_tools()).tools} == TOOLS
        assert "hello" in (await s.ok("get_trace", run_id=info["run_id"]))["text"]
        waited = await s.ok("run_loop", spec_yaml=HELLO_SPEC, model="local", wait=True)
        assert waited["status"] == "completed", waited
        assert len((await s.ok("list_runs"))["runs"]) == 2
        s.assert_stream_clean()

    stdio(root, flow, timeout=900)
