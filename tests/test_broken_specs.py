"""Broken specs never crash or hang `loopengt validate`: exit 2 and one line per problem.

A spec problem is always found by validation, never later: ``compile_spec`` given a broken
fixture fails in its ``load_spec`` with the same problems, before any compiler runs.

Each fixture in ``tests/fixtures/broken/`` starts with one or more ``# expect: LINE:COL: TEXT``
comments, one per problem: the validator must report exactly that many problems, each as
``FILE:LINE:COL: ...`` containing TEXT. Fixtures that would be huge or are not text are
generated into ``tmp_path`` instead of being committed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from loopengt.spec import SpecError, load_spec

BROKEN = Path(__file__).resolve().parent / "fixtures" / "broken"
FIXTURES = sorted(BROKEN.glob("*.yaml"))
EXPECT = re.compile(r"(\d+):(\d+): (.+)")
TIMEOUT_SECONDS = 20

VALID_SPEC = """\
name: summarise
goal: Summarise a document in three sentences.
agents:
  - name: writer
    description: Writes summaries.
steps:
  - name: draft
    agent: writer
    prompt: "Summarise for this goal: {{goal}}"
"""


def expectations(path: Path) -> list[str]:
    """The ``# expect:`` header of a fixture (read as bytes: some fixtures are not UTF-8)."""
    found = []
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"# expect: "):
            break
        found.append(raw[len(b"# expect: ") :].decode("ascii"))
    return found


# --- generated fixtures: (file name, expectations, writer) --------------------------------


def _write_50_mb(path: Path) -> None:
    chunk = "# padding: the validator must refuse this file without reading it all\n" * 1000
    with path.open("w", encoding="utf-8") as fh:
        fh.write(VALID_SPEC)
        while fh.tell() < 50 * 1024 * 1024:
            fh.write(chunk)


def _write_deep_nesting(path: Path) -> None:
    path.write_text("name: deep\ngoal: Nest\nmetadata: " + "[" * 20_000 + "]" * 20_000 + "\n")


def _write_long_list(path: Path) -> None:
    path.write_text(VALID_SPEC + "metadata:\n  numbers: [" + ", ".join(["1"] * 150_000) + "]\n")


GENERATED: dict[str, tuple[list[str], Callable[[Path], None]]] = {
    "huge-50mb.yaml": (
        ["1:1: spec is larger than 1 MB (52,"],
        _write_50_mb,
    ),
    "zero-bytes.yaml": (["1:1: spec is empty"], lambda p: p.write_bytes(b"")),
    "utf16.yaml": (
        ["1:1: not UTF-8 text"],
        lambda p: p.write_text(VALID_SPEC, encoding="utf-16"),
    ),
    "deep-nesting-20000.yaml": (
        ["1:1: nesting deeper than 64 levels; refusing it"],
        _write_deep_nesting,
    ),
    "long-list-150000.yaml": (
        ["11:299938: document expands to more than 100,000 values"],
        _write_long_list,
    ),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("generated")
    paths = {}
    for name, (_, write) in GENERATED.items():
        write(folder / name)
        paths[name] = folder / name
    return paths


# --- checks -------------------------------------------------------------------------------


def assert_reports(lines: list[str], filename: str, expected: list[str]) -> None:
    """``lines`` are exactly the expected problems of ``filename``, each in the one-line form."""
    form = re.compile(re.escape(filename) + r":\d+:\d+: \S")
    assert lines, "no problem reported"
    for line in lines:
        assert form.match(line), f"not a FILE:LINE:COL: problem line: {line!r}"
    assert len(lines) == len(expected), "\n".join(lines)
    for item in expected:
        match = EXPECT.fullmatch(item)
        assert match, f"bad expectation {item!r}: write LINE:COL: TEXT"
        prefix = f"{filename}:{match[1]}:{match[2]}: "
        hits = [line for line in lines if line.startswith(prefix) and match[3] in line]
        assert hits, f"expected {prefix}...{match[3]}... in:\n" + "\n".join(lines)


def run_validate(*paths: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "LOOPENGT_DEBUG")}
    env.update(NO_COLOR="1", COLUMNS="80")  # long problem lines must not be wrapped
    command = [sys.executable, "-m", "loopengt", "validate", *map(str, paths)]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=TIMEOUT_SECONDS,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`loopengt validate` hung for {TIMEOUT_SECONDS}s on {paths}")


def assert_cli_rejects(path: Path, expected: list[str], cwd: Path) -> None:
    result = run_validate(path, cwd=cwd)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    assert_reports(result.stderr.splitlines(), str(path), expected)


def assert_load_rejects(path: Path, expected: list[str]) -> None:
    try:
        load_spec(path)
    except SpecError as exc:
        assert_reports(exc.lines(), str(path), expected)
    else:
        pytest.fail(f"{path.name} loaded without a SpecError")


# --- the fixtures -------------------------------------------------------------------------


def test_there_are_sixty_five_fixtures_each_with_an_expectation() -> None:
    assert len(FIXTURES) == 65
    assert [path.name for path in FIXTURES if not expectations(path)] == []
    for path in FIXTURES:
        assert path.stat().st_size < 4096, f"{path.name}: keep committed fixtures small"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_cli_rejects_broken_spec(path: Path, tmp_path: Path) -> None:
    assert_cli_rejects(path, expectations(path), cwd=tmp_path)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_cli_rejects_generated_spec(name: str, generated: dict[str, Path], tmp_path: Path) -> None:
    assert_cli_rejects(generated[name], GENERATED[name][0], cwd=tmp_path)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_load_spec_rejects_broken_spec(path: Path) -> None:
    assert_load_rejects(path, expectations(path))


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_load_spec_rejects_generated_spec(name: str, generated: dict[str, Path]) -> None:
    assert_load_rejects(generated[name], GENERATED[name][0])


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_compile_spec_never_gets_past_validation(path: Path) -> None:
    """The compilers never see a broken spec: compile_spec fails in load_spec, with exactly
    the problems validation reports (no compiler's own UserInputError, no LangGraph error)."""
    from loopengt import compile_spec

    with pytest.raises(SpecError) as info:
        compile_spec(path, check_models=False)
    assert_reports(info.value.lines(), str(path), expectations(path))


# --- `loopengt validate` on good and mixed input ------------------------------------------


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_validate_valid_file(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "loop.yaml", VALID_SPEC)
    result = run_validate(path, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert "Traceback" not in result.stdout


def test_validate_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("loopengt")
    path = write_spec(tmp_path, "loop.yaml", VALID_SPEC)
    ok = subprocess.run(
        [str(script), "validate", str(path)], capture_output=True, text=True, timeout=20
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [str(script), "validate", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [f"{tmp_path / 'missing.yaml'}:1:1: no such file"]


def test_validate_reports_only_the_invalid_file(tmp_path: Path) -> None:
    good = write_spec(tmp_path, "good.yaml", VALID_SPEC)
    bad = write_spec(
        tmp_path,
        "bad.yaml",
        """\
        name: review
        goal: Review a draft.
        agents:
          - name: writer
          - name: reviewer
        steps:
          - name: draft
            agent: writer
          - name: review
            agent: reviwer
            depends_on: [drafts]
        """,
    )
    result = run_validate(good, bad, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"{bad}:10:12: steps[1].agent: unknown agent 'reviwer' (did you mean 'reviewer'?)",
        f"{bad}:11:18: steps[1].depends_on[0]: unknown step 'drafts' (did you mean 'draft'?)",
    ]
    assert "Traceback" not in result.stdout


def test_validate_relative_path_is_reported_as_given(tmp_path: Path) -> None:
    write_spec(tmp_path, "loop.yaml", "name: demo\ngoal: Summarise\nagents: []\nsteps: []\n")
    result = run_validate(Path("loop.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "loop.yaml:3:9: agents: must have at least 1 item(s)",
        "loop.yaml:4:8: steps: pattern 'sequential' needs at least one step",
    ]
