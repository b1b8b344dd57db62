"""`loopengt` as a user runs it: a fresh process in a folder, with its own HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    cwd: Path, *args: str, home: Path | None = None, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``loopengt ARGS`` in ``cwd`` (HOME: ``home``, default ``cwd``; no LOOPENGT_MODEL)."""
    env = {**os.environ, "HOME": str(home or cwd)}
    env.pop("LOOPENGT_MODEL", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "loopengt", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
