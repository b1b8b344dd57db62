"""The CLI skeleton: version, help, schema, init, graph, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from loopengt import __version__
from loopengt.project import CONFIG_TOML, init_project
from loopengt.spec.schema import loopspec_json_schema

ROOT = Path(__file__).resolve().parents[1]


def loopengt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
    )


def test_version() -> None:
    result = loopengt("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"loopengt {__version__}"


def test_help_lists_commands_without_importing_langchain() -> None:
    code = (
        "import sys\n"
        "from loopengt.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langgraph', 'langchain_core', 'langchain_openai', 'pydantic'))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    for command in ("validate", "schema", "init", "graph"):
        assert command in result.stdout


def test_unknown_command_and_option_are_one_line_errors_with_exit_2() -> None:
    for args in (["bogus"], ["validate", "--nope"], ["validate"]):
        result = loopengt(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error: "), result.stderr


def test_schema_is_a_valid_json_schema_that_accepts_the_examples() -> None:
    result = loopengt("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema == loopspec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"name", "goal", "agents", "steps"} <= set(schema["required"])
    import yaml

    for example in sorted((ROOT / "examples").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(example.read_text()), schema)


def test_schema_writes_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "loopspec.schema.json"
    result = loopengt("schema", "-o", str(out))
    assert result.returncode == 0
    assert json.loads(out.read_text())["title"] == "LoopSpec"


def test_init_creates_the_project_folder_and_never_overwrites(tmp_path: Path) -> None:
    result = loopengt("init", str(tmp_path))
    assert result.returncode == 0
    state = tmp_path / ".loopengt"
    assert (state / "config.toml").read_text() == CONFIG_TOML
    assert (state / "prompts").is_dir() and (state / "templates").is_dir()

    (state / "config.toml").write_text("[llm]\nmodel = 'openai:mine'\n")
    report = init_project(tmp_path)
    assert report.created == []
    assert (state / "config.toml").read_text() == "[llm]\nmodel = 'openai:mine'\n"
    again = loopengt("init", str(tmp_path))
    assert again.returncode == 0
    assert "exists" in again.stdout and "created" not in again.stdout


def test_graph_prints_mermaid_without_a_model(tmp_path: Path) -> None:
    result = loopengt("graph", "examples/research-brief.yaml", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "graph TD;" in result.stdout
    for edge in ("__start__ --> facts", "facts --> draft", "draft --> title"):
        assert edge in result.stdout


def test_graph_on_a_bad_spec_reports_the_problem(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\ngoal: y\nagents: []\nsteps: []\n")
    result = loopengt("graph", str(spec))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{spec}:3:9: agents: ")
    assert "Traceback" not in result.stderr


def test_invalid_config_toml_is_a_one_line_input_error(tmp_path: Path) -> None:
    from loopengt.config import Config
    from loopengt.errors import UserInputError

    (tmp_path / ".loopengt").mkdir()
    (tmp_path / ".loopengt" / "config.toml").write_text("not = [valid")
    with pytest.raises(UserInputError, match=r"config\.toml: invalid TOML") as caught:
        Config.load(tmp_path)
    assert caught.value.exit_code == 2
    assert len(caught.value.messages()) == 1


def test_compiling_without_any_model_says_how_to_configure_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopengt
    from loopengt.errors import UserInputError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOPENGT_MODEL", raising=False)
    monkeypatch.setattr("loopengt.providers.local.local_model_available", lambda: False)
    with pytest.raises(UserInputError, match=r"no model configured.*LOOPENGT_MODEL.*\[local\]"):
        loopengt.compile_spec(ROOT / "examples" / "research-brief.yaml")
