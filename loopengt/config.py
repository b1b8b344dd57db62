"""A project's configuration: `.loopengt/config.toml` under the project root, read once into a
`Config` and passed down to everything that needs it (model resolution, prices, tools,
storage, traces).

Why an object rather than a lookup: a long-lived process — the MCP server, `langgraph dev`, a
dataset eval — may serve several projects, and each run must read its own project's file,
not whatever the process's working directory holds.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG
from types import MappingProxyType
from typing import Any

from loopengt.errors import UserInputError
from loopengt.project import STATE_DIR, find_project

CONFIG_FILE = f"{STATE_DIR}/config.toml"
DEFAULT_TRACE_CHARS = 4000


@dataclass(frozen=True)
class Config:
    """What `.loopengt/config.toml` says, with the project root it was read from."""

    root: Path = field(default_factory=Path.cwd)
    """The project folder, holding `.loopengt/` (runs, the database, this file)."""

    llm: Mapping[str, Any] = field(default_factory=dict)
    """`[llm]`: `model` for agents that name none, `base_url` and `api_key_env` for the
    openai provider, and a table per provider (`[llm.anthropic]`, `[llm.ollama]`)."""

    storage: Mapping[str, Any] = field(default_factory=dict)
    """`[storage]`: `checkpointer`, a SQLite file or a `postgresql://` URL."""

    trace: Mapping[str, Any] = field(default_factory=dict)
    """`[trace]`: `max_text_chars`, where prompts and responses are cut in traces."""

    tools: Mapping[str, Any] = field(default_factory=dict)
    """`[tools]`: `http_get = true` enables that builtin; `mcp_startup_timeout_seconds` and
    `mcp_call_timeout_seconds` bound MCP servers."""

    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """`[prices."model"]`: (input, output) USD per million tokens, checked when read."""

    local: Mapping[str, Any] = field(default_factory=dict)
    """`[local]`: the embedded model. `threads`, how many CPU threads llama.cpp uses (default:
    the machine's physical cores, so it does not starve everything else)."""

    @classmethod
    def load(cls, root: Path | str | None = None) -> Config:
        """The configuration of the project at ``root`` (default: `find_project`, the nearest
        folder upwards holding `.loopengt/`);
        no file means defaults. A file that is not valid TOML, or a section that is not a
        table, is a `UserInputError` naming the file."""
        base = Path(root) if root is not None else find_project()
        path = base / CONFIG_FILE
        data = _read(path)
        sections = {name: _table(data, name) for name in cls._SECTIONS}
        return cls(
            root=base.resolve(),
            prices=MappingProxyType(_prices(sections.pop("prices"))),
            **{name: MappingProxyType(dict(value)) for name, value in sections.items()},
        )

    _SECTIONS = ("llm", "storage", "trace", "tools", "prices", "local")

    @property
    def state_dir(self) -> Path:
        """`.loopengt/` of the project."""
        return self.root / STATE_DIR

    @property
    def default_model(self) -> str | None:
        """The model for agents the spec leaves without one: `[llm] model`, else
        `LOOPENGT_MODEL` (the caller falls back to `local` when it is installed)."""
        name = self.llm.get("model") or os.environ.get("LOOPENGT_MODEL")
        return str(name) if name else None

    @property
    def trace_chars(self) -> int:
        return int(self.trace.get("max_text_chars", DEFAULT_TRACE_CHARS))

    @property
    def local_threads(self) -> int | None:
        """`[local] threads`, checked: a positive integer, or None for the default."""
        value = self.local.get("threads")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"{CONFIG_FILE}: [local] threads must be a positive integer")
        return value

    def provider(self, name: str) -> dict[str, Any]:
        """Settings of one provider: its `[llm.<name>]` table; for openai also the older
        `[llm] base_url` / `api_key_env` keys."""
        own = self.llm.get(name)
        settings = dict(own) if isinstance(own, Mapping) else {}
        if name == "openai":
            for key in ("base_url", "api_key_env"):
                if key in self.llm and not isinstance(self.llm[key], Mapping):
                    settings.setdefault(key, self.llm[key])
        return settings


def _read(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
    except OSError:
        return {}
    if not S_ISREG(stat.st_mode):
        return {}
    return _parsed(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parsed once per version of the file (callers only read the result)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: invalid TOML: {exc}") from None


def _table(data: dict[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise UserInputError(f"{CONFIG_FILE}: [{name}] must be a table")
    return section


def _prices(table: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    prices: dict[str, tuple[float, float]] = {}
    for name, entry in table.items():
        try:
            if not isinstance(entry, dict) or set(entry) - {"input", "output"}:
                raise TypeError(name)
            prices[name] = (float(entry.get("input", 0)), float(entry.get("output", 0)))
        except (TypeError, ValueError):
            raise UserInputError(
                f"{CONFIG_FILE}: [prices.{name}] must hold numbers `input` and `output` (USD per "
                'million tokens); quote names with dots: [prices."gpt-4.1"]'
            ) from None
    return prices
