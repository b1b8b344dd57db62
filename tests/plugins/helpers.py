"""Running loopengt with the built plugin distributions on PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.runs.helpers import cli_env

CLI_TIMEOUT = 90


@dataclass(frozen=True)
class Installed:
    wheels: dict[str, Path]
    """Distribution name -> its built wheel."""
    site: Path
    """The folder the wheels are installed in (for PYTHONPATH)."""


def plugin_env(site: Path, home: Path) -> dict[str, str]:
    """The CLI's environment: the plugins on PYTHONPATH, a private HOME, wide tables."""
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["HOME"] = str(home)
    env["COLUMNS"] = "200"
    return env


def loopengt(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        cwd=cwd,
        env=plugin_env(site, cwd / "home"),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def make_project(root: Path) -> Path:
    """A project whose default model is the built-in test model."""
    (root / ".loopengt").mkdir(parents=True)
    (root / ".loopengt" / "config.toml").write_text('[llm]\nmodel = "test"\n', encoding="utf-8")
    return root
