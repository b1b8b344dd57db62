"""Shared by the Studio tests: a project folder, the generated module, the CLI in-process."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from loopengt.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "research-brief.yaml"


def make_project(folder: Path, config: str = '[llm]\nmodel = "test"\n') -> Path:
    """A project folder whose agents use the shipped test model."""
    (folder / ".loopengt").mkdir(parents=True, exist_ok=True)
    (folder / ".loopengt" / "config.toml").write_text(config)
    return folder


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load_module(path: Path) -> ModuleType:
    """The generated module, imported from its file as the server does (a fresh copy)."""
    name = f"loopengt_graphs_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`loopengt ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ended:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = ended.value.code
    return (code if isinstance(code, int) else 0), out, err
