"""`.loopengt/config.toml` of the working directory."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from loopengt.errors import UserInputError
from loopengt.project import STATE_DIR


def load_config(root: Path | str = ".") -> dict[str, Any]:
    path = Path(root) / STATE_DIR / "config.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: invalid TOML: {exc}") from None


def config_section(name: str, root: Path | str = ".") -> dict[str, Any]:
    section = load_config(root).get(name, {})
    if not isinstance(section, dict):
        raise UserInputError(f".loopengt/config.toml: [{name}] must be a table")
    return section
