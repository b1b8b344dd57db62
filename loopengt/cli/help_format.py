"""How help text names arguments and flags: the conventions of most CLIs, not typer 0.29's.

typer 0.29 prints a required argument as `{file}` (a list as `{FILE...}...`) and a type
column `<bool>` beside every flag, which users read as syntax to type. These two overrides
restore the usual forms: `FILE`, `FILE...`, `[FILE]`, `TEXT`, and no type on a flag or
argument.
"""

from __future__ import annotations

from typing import Any

from typer import core


def _usage_display_name(self: core.TyperArgument) -> str:
    name = (self.metavar or self.name or "arg").upper().removesuffix("...")
    if self.nargs != 1:
        name += "..."
    return name if self.required else f"[{name}]"


_option_type = core.TyperOption.display_type_rich


def _display_type_rich(self: core.TyperOption, ctx: Any) -> str | None:
    """No type on a flag; `TEXT`, `INTEGER`, `FLOAT`, `PATH` or the choices elsewhere."""
    if self.is_flag:
        return None
    shown = _option_type(self, ctx)
    if shown is None or self.metavar is not None:
        return shown
    label = shown.strip("<>").removesuffix("...")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    return _NAMES.get(label, label.upper() if "|" not in label else label)


_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "PATH"}


def _no_type(self: core.TyperArgument, ctx: Any) -> str | None:
    return None  # an argument's name says what it is: `FILE`, `RUN_ID`


def install() -> None:
    core.TyperArgument._usage_display_name = _usage_display_name  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign, assignment]
    core.TyperOption.display_type_rich = _display_type_rich  # type: ignore[method-assign]
