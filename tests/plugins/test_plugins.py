"""Plugins through the real parts: distributions built with `uv build`, installed into a
folder on PYTHONPATH, and loopengt run in subprocesses that find them by entry points — a
verifier used as a gate, a template listed, an MCP tool served, a skill written for an IDE,
and broken or incompatible plugins reported without breaking anything else."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopengt import plugins
from loopengt.errors import UserInputError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "plugins"
SOURCES = [
    FIXTURES / "acme-plugin",
    FIXTURES / "broken-plugin",
    FIXTURES / "old-plugin",
    REPO / "plugins" / "loopengt-plugin-cursor",
]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four distributions, built as wheels and installed into one folder."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    wheels = tmp_path_factory.mktemp("wheels")
    for source in SOURCES:
        subprocess.run(
            [uv, "build", "--quiet", "--wheel", "--out-dir", str(wheels), str(source)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    target = tmp_path_factory.mktemp("site")
    built = sorted(str(w) for w in wheels.glob("*.whl"))
    assert len(built) == len(SOURCES), built
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(target), *built],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".loopengt").mkdir()
    (tmp_path / ".loopengt" / "config.toml").write_text('[llm]\nmodel = "test"\n')
    return tmp_path


def loopengt(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "HOME": str(cwd / "home")}
    env.pop("LOOPENGT_MODEL", None)
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def gated_spec(root: Path, verifier: str) -> Path:
    spec = root / "loop.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
            name: notes
            goal: Write release notes.
            agents: [{{name: writer}}]
            steps:
              - name: draft
                prompt: Write the release notes.
                gate: {{kind: verifier, verifier: {verifier}, max_attempts: 2}}
            policy: {{max_turns: 6}}
            """)
    )
    return spec


def test_a_plugin_verifier_is_a_gate(site: Path, project: Path) -> None:
    gated_spec(project, "no_todo")
    good = loopengt(site, project, "run", "loop.yaml", "--model", "test:text=All done.")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = loopengt(site, project, "run", "loop.yaml", "--model", "test:text=TODO: write it")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    listed = json.loads(loopengt(site, project, "runs", "--json").stdout)
    failed = next(r for r in listed if r["status"] != "completed")
    trace = loopengt(site, project, "trace", failed["run_id"], "--format", "json")
    gates = [e for e in json.loads(trace.stdout)["events"] if e.get("kind") == "gate"]
    assert [g["reason"] for g in gates] == ["contains TODO", "contains TODO"]
    assert not any(g["passed"] for g in gates)


def test_a_broken_verifier_plugin_is_exit_2_before_any_call(site: Path, project: Path) -> None:
    gated_spec(project, "broken_check")
    result = loopengt(site, project, "run", "loop.yaml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "acme broke" in result.stderr and "Traceback" not in result.stderr
    assert "resume" not in result.stderr
    gated_spec(project, "old_check")
    old = loopengt(site, project, "run", "loop.yaml")
    assert old.returncode == 2 and "supports loopengt <0.1" in old.stderr


def test_a_plugin_template_is_listed_and_usable(site: Path, project: Path) -> None:
    result = loopengt(site, project, "template", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["acme-review"]["source"] == "plugin acme-loopengt"
    assert "acme-review" in loopengt(site, project, "template", "list").stdout
    used = loopengt(site, project, "template", "use", "acme-review", "-o", "review.yaml")
    assert used.returncode == 0, used.stderr
    assert loopengt(site, project, "validate", "review.yaml").returncode == 0


def test_a_plugin_mcp_tool_is_served(site: Path, project: Path) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {**os.environ, "PYTHONPATH": str(site), "HOME": str(project / "home")}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopengt", "mcp", "serve", "--root", str(project)],
        env=env,
    )

    async def session() -> tuple[list[str], Any]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            names = [t.name for t in (await s.list_tools()).tools]
            return names, await s.call_tool("acme_echo", {"text": "hi"})

    names, echoed = asyncio.run(asyncio.wait_for(session(), timeout=120))
    assert {"acme_echo", "run_loop", "design_loop"} <= set(names)
    assert not echoed.isError and echoed.content[0].text == "ACME: HI"


def test_a_plugin_skill_is_written_for_an_ide(site: Path, project: Path) -> None:
    result = loopengt(site, project, "init", "--ide", "claude-code")
    assert result.returncode == 0, result.stderr
    skill = project / ".claude" / "skills" / "acme-review" / "SKILL.md"
    assert skill.is_file() and "Review $ARGUMENTS with the acme_echo tool." in skill.read_text()
    assert (project / ".claude" / "skills" / "loopengt-run" / "SKILL.md").is_file()


def test_doctor_lists_plugins_and_broken_ones_do_not_fail_it(site: Path, project: Path) -> None:
    result = loopengt(site, project, "doctor", "--offline", "--json")
    payload = json.loads(result.stdout)
    checks = {c["name"]: c for c in payload["checks"]}
    acme = checks["plugin acme-loopengt"]
    assert acme["status"] == "ok" and "verifiers no_todo" in acme["detail"]
    broken = checks["plugin acme-broken"]
    assert broken["status"] == "fail" and not broken["required"]
    assert "RuntimeError: acme broke" in broken["detail"]
    old = checks["plugin acme-old"]
    assert old["status"] == "fail" and "supports loopengt <0.1, this is 0.1.0" in old["detail"]
    assert checks["plugin loopengt-plugin-cursor"]["status"] == "ok"
    assert payload["ok"] is True and result.returncode == 0  # plugins are not required


# -- the loader itself, on fake distributions ---------------------------------------------------


def fake_plugin(site: Path, name: str, entry_points: str, module: str) -> None:
    dist = site / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (site / f"{name.replace('-', '_')}.py").write_text(textwrap.dedent(module))


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_loader_reports_each_reason_a_plugin_is_skipped(fake_site: Path) -> None:
    fake_plugin(fake_site, "no-manifest", "[loopengt.verifiers]\nv1 = no_manifest:v\n", "v = 1\n")
    fake_plugin(
        fake_site,
        "bad-manifest",
        "[loopengt.plugins]\nm = bad_manifest:m\n[loopengt.verifiers]\nv2 = bad_manifest:v\n",
        "m = {'name': 'x', 'version': '1', 'capabilities': ['teleport']}\nv = 1\n",
    )
    fake_plugin(
        fake_site,
        "bad-spec",
        "[loopengt.plugins]\nm = bad_spec:m\n[loopengt.verifiers]\nv3 = bad_spec:v\n",
        "m = {'name': 'x', 'version': '1', 'capabilities': ['verifiers'], 'loopengt': 'soon'}\n"
        "v = 1\n",
    )
    fake_plugin(
        fake_site,
        "undeclared",
        "[loopengt.plugins]\nm = undeclared:m\n[loopengt.verifiers]\nv4 = undeclared:v\n",
        "m = {'name': 'x', 'version': '1', 'capabilities': ['templates']}\nv = 1\n",
    )
    fake_plugin(
        fake_site,
        "good",
        "[loopengt.plugins]\nm = good:m\n[loopengt.verifiers]\nv5 = good:v\n",
        "m = {'name': 'x', 'version': '1', 'capabilities': ['verifiers']}\n"
        "v = lambda o, step: True\n",
    )
    problems = {e.name: e.problem for e in plugins.load("verifiers")}
    assert problems["v1"] == "no manifest (a 'loopengt.plugins' entry point)"
    assert problems["v2"] is not None and problems["v2"].startswith(
        "invalid manifest: capabilities"
    )
    assert problems["v3"] == "invalid loopengt version specifier 'soon'"
    assert problems["v4"] == "'verifiers' is not among the manifest's capabilities"
    assert problems["v5"] is None
    assert callable(plugins.find("verifiers", "v5"))
    with pytest.raises(UserInputError, match=r"loopengt\.verifiers plugin 'v3': invalid loopengt"):
        plugins.find("verifiers", "v3")
    with pytest.raises(UserInputError, match="'nope' not found"):
        plugins.find("verifiers", "nope")
    listed = {p.distribution: p for p in plugins.plugins()}
    assert listed["good"].problem is None and listed["no-manifest"].problem is not None
