"""`loopengt studio --serve`: `langgraph dev` on the exported files."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopengt.errors import UserInputError

if TYPE_CHECKING:
    pass

EXTRA_HINT = "install the studio extra: uv sync --extra studio (or pip install 'loopengt[studio]')"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 2024


# -- serve --------------------------------------------------------------------------------------


def missing_studio_extra() -> str | None:
    """The module of the studio extra that is not installed (`langgraph dev` needs both)."""
    import importlib.util

    for module in ("langgraph_cli", "langgraph_api"):
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return module
    return None


def check_studio_extra() -> None:
    """A `UserInputError` naming the extra to install when `langgraph dev` is missing."""
    missing = missing_studio_extra()
    if missing is not None:
        raise UserInputError(f"--serve needs {missing.replace('_', '-')}: {EXTRA_HINT}")


def serve_command(
    config_path: Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> list[str]:
    """`langgraph dev` for ``config_path``, run by this interpreter (where loopengt is)."""
    return [
        sys.executable,
        "-m",
        "langgraph_cli",
        "dev",
        "--no-browser",
        "--host",
        host,
        "--port",
        str(port),
        "--config",
        str(config_path),
    ]


def serve_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: no LangSmith tracing, no CLI analytics."""
    env = dict(os.environ if base is None else base)
    env["LANGSMITH_TRACING"] = "false"
    env["LANGGRAPH_CLI_NO_ANALYTICS"] = "1"
    return env


def start_server(
    config_path: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    env: dict[str, str] | None = None,
    new_session: bool = True,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """Start `langgraph dev` in the folder of ``config_path`` (it resolves the graphs'
    paths and `dependencies` from its working directory); ``new_session``: in a process
    group of its own, out of reach of the terminal's Ctrl-C."""
    check_studio_extra()
    return subprocess.Popen(
        serve_command(config_path, host=host, port=port),
        cwd=config_path.parent,
        env=serve_env(env),
        start_new_session=new_session,
        **popen,
    )


def studio_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"https://smith.langchain.com/studio/?baseUrl=http://{host}:{port}"


def stop_server(process: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """Stop the server and its reloader: SIGTERM (to its process group when it leads one),
    then SIGKILL after ``timeout`` seconds."""
    import signal

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, sig)
            else:
                os.kill(process.pid, sig)

    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout)
    return process.returncode if process.returncode is not None else 0
