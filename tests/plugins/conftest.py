"""The plugin distributions of tests/fixtures/plugins (and the Cursor adapter plugin of
plugins/), built as real wheels with `uv build` once per session and installed with
`uv pip install --target` into one folder that loopengt subprocesses get on PYTHONPATH."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.plugins.helpers import Installed, make_project

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "plugins"
SOURCES = {
    "acme-loopengt": FIXTURES / "acme-plugin",
    "acme-broken": FIXTURES / "broken-plugin",
    "acme-old": FIXTURES / "old-plugin",
    "loopengt-plugin-cursor": REPO / "plugins" / "loopengt-plugin-cursor",
}
BUILD_TIMEOUT = 300  # seconds; the first build may fetch hatchling into uv's cache


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    out = tmp_path_factory.mktemp("wheels")
    builds = {
        name: subprocess.Popen(
            [uv, "build", "--quiet", "--wheel", "--out-dir", str(out / name), str(source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, source in SOURCES.items()
    }
    wheels = {}
    for name, proc in builds.items():
        log, _ = proc.communicate(timeout=BUILD_TIMEOUT)
        assert proc.returncode == 0, f"uv build {SOURCES[name]} failed:\n{log}"
        (wheel,) = (out / name).glob("*.whl")
        wheels[name] = wheel
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [uv, "pip", "install", "--no-deps", "--target", str(site), *map(str, wheels.values())],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Installed(wheels, site)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")
