"""Plugins through the real parts: distributions built with `uv build`, installed into a
folder on PYTHONPATH, and loopengt run in subprocesses that find them by entry points — a
verifier used as a gate and as a branch condition, templates listed, MCP tools served, a
skill written for an IDE, and broken or incompatible plugins reported without breaking
anything else."""

from __future__ import annotations

import json
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loopengt import __version__, plugins
from loopengt.spec import load_spec
from tests.mcp_server.client import run, server_args, text_of
from tests.plugins.helpers import Installed, loopengt, make_project, plugin_env

NO_TODO_SPEC = """\
    name: notes
    goal: Write release notes.
    agents: [{name: writer}]
    steps:
      - name: draft
        prompt: Write the release notes.
        gate: {kind: verifier, verifier: VERIFIER, max_attempts: 2}
    policy: {max_turns: 6}
    """

ROUTED_SPEC = """\
    name: routed
    goal: Route a draft by Acme's check.
    pattern: custom
    agents: [{name: writer}]
    steps:
      - {name: draft, prompt: Write the release notes.}
      - {name: publish, prompt: Publish them.}
      - {name: flag, prompt: Flag them for a human.}
    graph:
      entry: draft
      edges:
        - from: draft
          branches:
            - {when: {verifier: no_todo}, to: publish}
          default: flag
        - {from: publish, to: END}
        - {from: flag, to: END}
    policy: {max_turns: 6}
    """


def write_spec(root: Path, text: str, verifier: str = "no_todo") -> str:
    (root / "loop.yaml").write_text(textwrap.dedent(text).replace("VERIFIER", verifier))
    return "loop.yaml"


def result_of(proc: Any) -> dict[str, Any]:
    """The `run --json` result (the last stdout line; progress goes to stderr)."""
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no stdout (exit {proc.returncode}):\n{proc.stderr}"
    data: dict[str, Any] = json.loads(lines[-1])
    return data


# -- the wheels ----------------------------------------------------------------------------------


def test_the_wheels_carry_the_entry_points_and_the_template_folder(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheels["acme-loopengt"]) as wheel:
        names = set(wheel.namelist())
        assert {
            "acme_loopengt/__init__.py",
            "acme_loopengt/templates/acme-review/loop.yaml",
            "acme_loopengt/templates/acme-review/README.md",
        } <= names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = wheel.read(entry_points).decode()
    for group in ("plugins", "verifiers", "templates", "mcp_tools", "skills"):
        assert f"[loopengt.{group}]" in text
    assert (installed.site / "acme_loopengt" / "templates" / "acme-review" / "loop.yaml").is_file()
    assert (installed.site / "loopengt_plugin_cursor").is_dir()


# -- in process, with the installed folder on sys.path -------------------------------------------


@pytest.fixture
def on_path(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed plugins importable in this process; their modules forgotten after."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(installed.site))
    yield installed.site
    for name in set(sys.modules) - before:
        where = getattr(sys.modules[name], "__file__", None) or ""
        if where.startswith(str(installed.site)):
            del sys.modules[name]


def test_the_loader_sees_each_installed_plugin_as_it_is(on_path: Path) -> None:
    found = {p.distribution: p for p in plugins.plugins()}
    assert set(found) == {"acme-broken", "acme-loopengt", "acme-old", "loopengt-plugin-cursor"}

    acme = found["acme-loopengt"]
    assert acme.problem is None and acme.manifest is not None
    assert (acme.manifest.name, acme.manifest.version) == ("acme", "1.2.0")
    assert all(e.problem is None for e in acme.entries)
    assert sorted((e.capability, e.name) for e in acme.entries) == [
        ("mcp_tools", "acme_echo"),
        ("mcp_tools", "acme_single"),
        ("mcp_tools", "acme_text_tools"),
        ("mcp_tools", "run_loop"),
        ("skills", "acme"),
        ("templates", "acme"),
        ("verifiers", "no_todo"),
    ]

    broken = found["acme-broken"]
    assert broken.problem is None  # its manifest is fine: only some entries are broken
    problems = {e.name: e.problem for e in broken.entries}
    assert problems == {
        "broken_check": "failed to load (RuntimeError: acme broke)",
        "broken_templates": "failed to load (RuntimeError: acme broke)",
        "acme_hotfix": None,
        "sneaky": "'mcp_tools' is not among the manifest's capabilities",
    }

    cursor = found["loopengt-plugin-cursor"]
    assert cursor.problem is None
    assert [(e.capability, e.name, e.problem) for e in cursor.entries] == [
        ("adapters", "cursor", None)
    ]


def test_an_incompatible_plugin_is_skipped_before_its_code_is_imported(on_path: Path) -> None:
    old = {p.distribution: p for p in plugins.plugins()}["acme-old"]
    why = f"supports loopengt <0.1, this is {__version__}"
    assert old.problem == why
    assert old.manifest is not None and old.manifest.loopengt == "<0.1"  # still listed
    assert {(e.capability, e.name): e.problem for e in old.entries} == {
        ("verifiers", "old_check"): why,
        ("templates", "old_templates"): why,
    }
    assert "acme_old.checks" not in sys.modules  # importing it raises: it was never tried


# -- verifiers -----------------------------------------------------------------------------------


def test_a_plugin_verifier_gates_a_step(installed: Installed, project: Path) -> None:
    spec = write_spec(project, NO_TODO_SPEC)
    site = installed.site
    good = loopengt(site, project, "run", spec, "-m", "test:text=All done.", "--json")
    assert good.returncode == 0, good.stderr
    assert result_of(good)["status"] == "completed"
    assert result_of(good)["outputs"] == {"draft": "All done."}

    bad = loopengt(
        site, project, "run", spec, "-m", "test:text=TODO: write it", "--run-id", "r1", "--json"
    )
    # a gate that keeps failing stops the run: status stopped, exit 1 (a failed run), and the
    # rejected output is kept
    assert bad.returncode == 1, bad.stderr
    assert "Traceback" not in bad.stderr
    result = result_of(bad)
    assert result["status"] == "stopped"
    assert result["stop_reason"] == "gate on step 'draft' failed after 2 attempt(s): contains TODO"
    assert result["outputs"] == {"draft": "TODO: write it"}
    assert "gate said no: contains TODO" in bad.stderr  # the retry, as the progress shows it

    trace = loopengt(site, project, "trace", "r1", "--format", "json")
    assert trace.returncode == 0, trace.stderr
    events = json.loads(trace.stdout)["events"]
    gates = [e for e in events if e["kind"] == "gate"]
    assert [(g["gate_kind"], g["passed"], g["reason"], g["attempt"]) for g in gates] == [
        ("verifier", False, "contains TODO", 1),
        ("verifier", False, "contains TODO", 2),
    ]
    retries = [e for e in events if e["kind"] == "retry"]
    assert [(r["cause"], r["reason"]) for r in retries] == [("gate", "contains TODO")]
    # the retry's prompt carries the verifier's reason back to the model
    second_call = [e for e in events if e["kind"] == "model_call"][1]
    assert "rejected: contains TODO" in second_call["messages"][-1]["content"]


def test_a_plugin_verifier_routes_a_custom_graph(installed: Installed, project: Path) -> None:
    spec = write_spec(project, ROUTED_SPEC)
    clean = loopengt(installed.site, project, "run", spec, "-m", "test:text=Ready.", "--json")
    assert clean.returncode == 0, clean.stderr
    assert set(result_of(clean)["outputs"]) == {"draft", "publish"}
    todo = loopengt(installed.site, project, "run", spec, "-m", "test:text=TODO.", "--json")
    assert todo.returncode == 0, todo.stderr
    assert set(result_of(todo)["outputs"]) == {"draft", "flag"}


@pytest.mark.parametrize(
    ("verifier", "reason"),
    [
        ("broken_check", "loopengt.verifiers plugin 'broken_check': failed to load "
         "(RuntimeError: acme broke)"),
        ("old_check", f"loopengt.verifiers plugin 'old_check': supports loopengt <0.1, "
         f"this is {__version__}"),
        ("no_such_check", "'no_such_check' not found (no 'loopengt.verifiers' entry point)"),
    ],
    ids=["import-error", "incompatible", "unknown"],
)  # fmt: skip
def test_a_gate_on_an_unusable_verifier_is_exit_2_before_any_call(
    installed: Installed, project: Path, verifier: str, reason: str
) -> None:
    spec = write_spec(project, NO_TODO_SPEC, verifier)
    result = loopengt(installed.site, project, "run", spec, "--run-id", "r1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {reason}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "resume" not in result.stderr
    assert not (project / ".loopengt" / "runs" / "r1.json").exists()  # nothing ran


# -- templates -----------------------------------------------------------------------------------


def test_template_list_shows_plugin_templates_and_broken_ones(
    installed: Installed, project: Path
) -> None:
    site = installed.site
    listed = loopengt(site, project, "template", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    acme = rows["acme-review"]
    assert (acme["source"], acme["pattern"], acme["purpose"], acme["problem"]) == (
        "plugin acme-loopengt",
        "sequential",
        "Acme's review loop",
        None,
    )
    assert acme["path"] == str(site / "acme_loopengt" / "templates" / "acme-review" / "loop.yaml")
    # the broken plugin: its good folder is listed, the entry that raises is listed as broken
    assert rows["acme-hotfix"]["source"] == "plugin acme-broken"
    assert rows["acme-hotfix"]["problem"] is None
    broken = rows["broken_templates"]
    assert broken["source"] == "plugin acme-broken" and broken["pattern"] is None
    assert broken["problem"] == "plugin skipped: failed to load (RuntimeError: acme broke)"
    assert rows["old_templates"]["problem"] == (
        f"plugin skipped: supports loopengt <0.1, this is {__version__}"
    )
    assert {"planner-executor", "reviewer-retry"} <= set(rows)  # the built-ins are still there

    table = loopengt(site, project, "template", "list")
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "plugin acme-loopengt" in lines["acme-review"]
    assert (
        "broken: plugin skipped: failed to load (RuntimeError: acme broke)"
        in (lines["broken_templates"])
    )

    used = loopengt(site, project, "template", "use", "acme_review", "-o", "review.yaml")
    assert used.returncode == 0, used.stderr
    assert "(plugin acme-loopengt)" in used.stdout
    assert load_spec(project / "review.yaml").name == "acme-review"


# -- MCP tools -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    tools: dict[str, Any]
    calls: dict[str, Any]
    run: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def served(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """One `loopengt mcp serve` session with the plugins installed: its tools, a few calls,
    and a run of a spec gated by the plugin verifier."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    root = make_project(tmp_path_factory.mktemp("mcp") / "project")
    write_spec(root, NO_TODO_SPEC)
    params = StdioServerParameters(
        command=sys.executable,
        args=server_args(root),
        env=plugin_env(installed.site, root / "home"),
        cwd=str(root),
    )
    log = root.parent / "server.log"

    async def session() -> Served:
        with log.open("w", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                tools = {t.name: t for t in (await client.list_tools()).tools}
                calls = {
                    name: await client.call_tool(name, {"text": "hello plugin world"})
                    for name in tools
                    if name.startswith("acme_")
                }
                started = await client.call_tool(
                    "run_loop", {"path": "loop.yaml", "model": "test:text=TODO", "wait": True}
                )
                assert not started.isError, text_of(started)
                assert isinstance(started.structuredContent, dict)
                got = await client.call_tool(
                    "get_run", {"run_id": started.structuredContent["run_id"]}
                )
                assert isinstance(got.structuredContent, dict), text_of(got)
        return Served(tools, calls, got.structuredContent, log.read_text(encoding="utf-8"))

    return run(session(), timeout=120)


def test_mcp_serve_adds_the_plugin_tools_beside_its_own(served: Served) -> None:
    assert {"run_loop", "design_loop", "list_templates", "acme_echo"} <= set(served.tools)
    assert served.tools["acme_echo"].description == "Echo the text back, shouting."
    assert served.tools["acme_echo"].inputSchema["required"] == ["text"]
    echoed = served.calls["acme_echo"]
    assert not echoed.isError and text_of(echoed) == "ACME: HELLO PLUGIN WORLD"
    # a list of functions: one tool per function, by the function's name
    assert text_of(served.calls["acme_reverse"]) == "dlrow nigulp olleh"
    assert served.calls["acme_count"].structuredContent == {"result": 3}
    assert "acme_text_tools" not in served.tools


def test_mcp_serve_skips_what_it_cannot_add_and_says_so(served: Served) -> None:
    # run_loop is still loopengt's own: the plugin's run_loop entry is skipped
    assert "spec_yaml" in served.tools["run_loop"].inputSchema["properties"]
    assert (
        "loopengt: mcp_tools plugin 'acme-loopengt' tool 'run_loop' skipped: "
        "ValueError: a tool named 'run_loop' exists already" in served.stderr
    )
    # an entry in a group the manifest does not declare
    assert "sneaky" not in served.tools
    assert (
        "loopengt: mcp_tools plugin 'acme-broken' tool 'sneaky' skipped: 'mcp_tools' is not "
        "among the manifest's "
        "capabilities" in served.stderr
    )


def test_mcp_run_loop_uses_the_plugin_verifier(served: Served) -> None:
    assert served.run["status"] == "stopped"
    assert served.run["stop_reason"] == (
        "gate on step 'draft' failed after 2 attempt(s): contains TODO"
    )


def test_a_list_of_one_function_names_the_tool_by_the_function(served: Served) -> None:
    assert "acme_shout" in served.tools
    assert "acme_single" not in served.tools


# -- skills --------------------------------------------------------------------------------------


def test_init_writes_a_plugin_skill_for_claude_code(installed: Installed, tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    result = loopengt(installed.site, root, "init", "--ide", "claude-code")
    assert result.returncode == 0, result.stderr
    assert "created   .claude/skills/acme-review/SKILL.md" in result.stdout
    skill = root / ".claude" / "skills" / "acme-review" / "SKILL.md"
    assert skill.read_text() == (
        "---\n"
        'name: "acme-review"\n'
        'description: "Review a loop spec against Acme\'s house rules."\n'
        'argument-hint: "<file>"\n'
        "---\n\n"
        "Review $ARGUMENTS with the acme_echo tool."
    )
    # a plugin skill with a built-in's name does not replace the built-in
    builtin = (root / ".claude" / "skills" / "loopengt-run" / "SKILL.md").read_text()
    assert "ACME RUN BODY" not in builtin and "`run_loop`" in builtin
    skills = sorted(p.name for p in (root / ".claude" / "skills").iterdir())
    assert skills == [
        "acme-review",
        "loopengt-design",
        "loopengt-eval",
        "loopengt-run",
        "loopengt-trace",
        "loopengt-validate",
    ]


# -- doctor --------------------------------------------------------------------------------------


def doctor(installed: Installed, root: Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
    result = loopengt(installed.site, root, "doctor", "--offline", "--json")
    payload = json.loads(result.stdout)
    return result.returncode, payload, {c["name"]: c for c in payload["checks"]}


def test_doctor_lists_plugins_and_broken_ones_do_not_fail_it(
    installed: Installed, project: Path
) -> None:
    code, payload, checks = doctor(installed, project)
    plugin_checks = {name: c for name, c in checks.items() if name.startswith("plugin ")}
    assert set(plugin_checks) == {
        "plugin acme-broken",
        "plugin acme-loopengt",
        "plugin acme-old",
        "plugin loopengt-plugin-cursor",
    }
    assert not any(c["required"] for c in plugin_checks.values())

    acme = checks["plugin acme-loopengt"]
    assert acme["status"] == "ok"
    assert acme["detail"].startswith("1.2.0: ")
    assert "verifiers no_todo" in acme["detail"] and "skills acme" in acme["detail"]
    assert checks["plugin loopengt-plugin-cursor"] == {
        "name": "plugin loopengt-plugin-cursor",
        "status": "ok",
        "detail": "0.1.0: adapters cursor",
        "hint": "",
        "required": False,
    }
    broken = checks["plugin acme-broken"]
    assert broken["status"] == "fail"
    assert (
        "verifiers 'broken_check': failed to load (RuntimeError: acme broke)" in (broken["detail"])
    )
    assert (
        "templates 'broken_templates': failed to load (RuntimeError: acme broke)"
        in (broken["detail"])
    )
    assert broken["hint"] == "upgrade or uninstall it: uv pip uninstall acme-broken"
    old = checks["plugin acme-old"]
    assert old["status"] == "fail"
    assert old["detail"] == f"supports loopengt <0.1, this is {__version__}"

    # `ok` (and the exit code) come from the required checks alone
    required_failed = any(c["status"] == "fail" and c["required"] for c in payload["checks"])
    assert not required_failed
    assert payload["ok"] is True and code == 0


def test_doctor_fails_on_a_required_check_not_on_a_plugin(
    installed: Installed, project: Path
) -> None:
    (project / ".loopengt" / "config.toml").write_text("[llm\n", encoding="utf-8")
    code, payload, checks = doctor(installed, project)
    assert checks["config"]["status"] == "fail" and checks["config"]["required"]
    assert checks["plugin acme-broken"]["status"] == "fail"
    assert checks["plugin acme-loopengt"]["status"] == "ok"
    assert payload["ok"] is False and code == 1
