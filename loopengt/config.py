"""`.loopengt/config.toml` of the working directory."""

from __future__ import annotations

import copy
import tomllib
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG
from typing import Any

from loopengt.errors import UserInputError
from loopengt.project import STATE_DIR


def load_config(root: Path | str = ".") -> dict[str, Any]:
    path = Path(root) / STATE_DIR / "config.toml"
    try:
        stat = path.stat()
    except OSError:
        return {}
    if not S_ISREG(stat.st_mode):
        return {}
    # read once per version of the file: every model call prices itself from [prices]
    return copy.deepcopy(_parsed(str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: invalid TOML: {exc}") from None


def config_section(name: str, root: Path | str = ".") -> dict[str, Any]:
    section = load_config(root).get(name, {})
    if not isinstance(section, dict):
        raise UserInputError(f".loopengt/config.toml: [{name}] must be a table")
    return section
