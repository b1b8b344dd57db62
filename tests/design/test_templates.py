"""Templates: the five built-ins are canonical and valid, `template list|show|use`, project
templates shadowing built-ins, plugin templates (a broken one listed, not fatal), `init`
copying them, and the closest-template choice a design falls back to."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loopengt.design import closest_template, get_template, list_templates
from loopengt.design.render import render_spec
from loopengt.errors import UserInputError
from loopengt.project import builtin_templates_dir, init_project
from loopengt.spec import load_spec, load_spec_text
from tests.runs.helpers import cli_env, loopengt

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.yaml"))
BUILTINS = {
    "handoff-loop": "handoff",
    "planner-executor": "sequential",
    "research-architect": "parallel_fan_out",
    "reviewer-retry": "evaluator_optimizer",
    "supervisor-workers": "supervisor_worker",
}


def test_the_five_builtins_are_listed_with_their_patterns(tmp_path: Path) -> None:
    templates = list_templates(tmp_path)
    assert {t.name: t.pattern for t in templates} == BUILTINS
    for template in templates:
        assert template.ok and template.source == "built-in"
        assert template.purpose and template.keywords and template.readme().strip()
        assert template.require().inputs, f"{template.name} declares no inputs"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_are_stored_as_the_formatter_writes_them(name: str) -> None:
    path = builtin_templates_dir() / name / "loop.yaml"
    assert render_spec(load_spec(path)) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rendering_loads_back_to_the_same_spec(path: Path) -> None:
    spec = load_spec(path)
    text = render_spec(spec)
    again = load_spec_text(text)
    assert again == spec
    assert text.startswith(f"# {spec.name} ({spec.pattern})")
    # `handoffs: []` (the agent answers) differs from no handoffs (None)
    assert [a.handoffs for a in again.agents] == [a.handoffs for a in spec.agents]


def test_names_take_underscores_and_unknown_names_suggest(tmp_path: Path) -> None:
    assert get_template("planner_executor", tmp_path).name == "planner-executor"
    with pytest.raises(UserInputError, match=r"no template 'planer-executor' \(did you mean"):
        get_template("planer-executor", tmp_path)


def test_use_fills_the_goal_and_never_overwrites(tmp_path: Path) -> None:
    goal = 'Clean the "orders" CSV: dedupe rows and fix dates'
    result = loopengt(tmp_path, "template", "use", "planner_executor", "--goal", goal)
    assert result.returncode == 0, result.stderr
    assert "next: loopengt run loop.yaml -i" in result.stderr
    spec = load_spec(tmp_path / "loop.yaml")
    assert spec.goal == goal and spec.name == "planner-executor"
    before = (tmp_path / "loop.yaml").read_text()
    again = loopengt(tmp_path, "template", "use", "reviewer-retry")
    assert again.returncode == 2 and "loop.yaml exists; use --force" in again.stderr
    assert (tmp_path / "loop.yaml").read_text() == before
    forced = loopengt(tmp_path, "template", "use", "reviewer-retry", "-o", "loop.yaml", "--force")
    assert forced.returncode == 0 and load_spec(tmp_path / "loop.yaml").name == "reviewer-retry"


def test_use_of_an_unknown_template_is_exit_2(tmp_path: Path) -> None:
    result = loopengt(tmp_path, "template", "use", "nope")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no template 'nope'") or "no template" in result.stderr
    assert not (tmp_path / "loop.yaml").exists()


def test_show_prints_the_yaml(tmp_path: Path) -> None:
    result = loopengt(tmp_path, "template", "show", "research-architect")
    assert result.returncode == 0
    expected = (builtin_templates_dir() / "research-architect" / "loop.yaml").read_text()
    assert result.stdout == expected
    readme = loopengt(tmp_path, "template", "show", "research-architect", "--readme")
    assert readme.returncode == 0 and "research-architect" in readme.stdout


def test_init_copies_templates_and_a_project_template_shadows(tmp_path: Path) -> None:
    report = init_project(tmp_path)
    copied = tmp_path / ".loopengt" / "templates"
    assert sorted(p.name for p in copied.iterdir()) == sorted(BUILTINS)
    mine = copied / "reviewer-retry" / "loop.yaml"
    spec = load_spec(mine).model_copy(update={"description": "our house style"})
    mine.write_text(render_spec(spec))
    again = init_project(tmp_path)
    assert copied / "reviewer-retry" in again.kept and not any(
        p.is_relative_to(copied) for p in again.created
    )
    assert load_spec(mine).description == "our house style"  # init never overwrites
    assert len(report.created) >= 5
    template = get_template("reviewer-retry", tmp_path)
    assert template.source == "project" and template.require().description == "our house style"


def _plugin(site: Path) -> None:
    """A plugin distribution on ``site``: one good template, one invalid, one broken entry."""
    dist = site / "acme_loops-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-loops\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[loopengt.plugins]\nacme = acme_loops:manifest\n"
        "[loopengt.templates]\nacme = acme_loops:folder\nghost = acme_missing:folder\n"
    )
    (site / "acme_loops.py").write_text(
        "from pathlib import Path\nfolder = Path(__file__).parent / 'acme_templates'\n"
        "manifest = {'name': 'acme', 'version': '1.0', 'capabilities': ['templates']}\n"
    )
    good = site / "acme_templates" / "acme-triage"
    good.mkdir(parents=True)
    (good / "loop.yaml").write_text(
        textwrap.dedent(
            """\
            name: acme-triage
            goal: Triage a ticket.
            metadata: {purpose: Acme's ticket triage}
            agents: [{name: a}]
            steps: [{name: s, prompt: "Triage."}]
            policy: {max_turns: 2}
            """
        )
    )
    bad = site / "acme_templates" / "acme-bad"
    bad.mkdir()
    (bad / "loop.yaml").write_text("name: acme-bad\ngoal: x\nagents: []\nsteps: []\n")


def test_plugin_templates_are_listed_and_broken_ones_do_not_break_the_list(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    _plugin(site)
    env = {**cli_env(), "PYTHONPATH": str(site)}
    command = [sys.executable, "-m", "loopengt", "template", "list", "--json"]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(BUILTINS) <= set(rows)
    assert rows["acme-triage"]["source"] == "plugin acme-loops"
    assert rows["acme-triage"]["purpose"] == "Acme's ticket triage"
    assert rows["acme-bad"]["problem"].startswith(str(site / "acme_templates" / "acme-bad"))
    assert "agents: must have at least 1 item(s)" in rows["acme-bad"]["problem"]
    assert "plugin skipped: failed to load (ModuleNotFoundError" in rows["ghost"]["problem"]
    table = subprocess.run(
        command[:-1], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert table.returncode == 0 and "broken:" in table.stdout
    use = subprocess.run(
        [*command[:-2], "use", "acme-bad"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert use.returncode == 2 and "is broken" in use.stderr


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        ("Review this pull request and suggest code improvements", "reviewer-retry"),
        ("Write a research report comparing vector databases", "research-architect"),
        ("Clean a messy CSV dataset: dedupe and normalize dates", "planner-executor"),
        ("Triage incoming bug reports and route them to the right team", "handoff-loop"),
        ("Write a blog post about our release and polish it", "reviewer-retry"),
    ],
)
def test_the_closest_template_is_chosen_by_the_goal(
    tmp_path: Path, goal: str, expected: str
) -> None:
    assert closest_template(goal, list_templates(tmp_path)).name == expected


def test_an_asked_pattern_wins_and_a_goal_with_no_match_is_still_served(tmp_path: Path) -> None:
    templates = list_templates(tmp_path)
    chosen = closest_template("Write a research report", templates, "supervisor_worker")
    assert chosen.name == "supervisor-workers"
    assert closest_template("zzz qqq", templates).ok
