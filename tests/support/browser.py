"""Render a local HTML file in headless Chromium (Debian's `chromium` package): the DOM after
its scripts ran, and every console message (errors included) the page produced.

Without Chromium the tests that need it skip, except under .ci/run, which installs it and
sets LOOPENGT_REQUIRE_CHROMIUM so they fail instead."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RENDER_TIMEOUT = 60


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("LOOPENGT_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required here (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def render(path: Path) -> tuple[str, list[str]]:
    """(the rendered DOM, the console messages) of the file at ``path``."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        path.resolve().as_uri(),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RENDER_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console
