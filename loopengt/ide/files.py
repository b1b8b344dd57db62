"""Edits to the files an IDE reads, planned before anything is written.

Each helper reads the file as it is and returns a `Change`: the text it should hold, or why it
is refused. Files we share with the user (JSON and TOML configs, AGENTS.md) are parsed and
rewritten with every other key kept, or get a section between markers; a file that does not
parse is refused, never overwritten. Files loopengt owns (its rules, commands and skills) are
written whole. A change whose text equals the file is `unchanged`, so re-running writes
nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Action = Literal["created", "updated", "unchanged", "refused"]

BEGIN = "<!-- loopengt:begin (written by `loopengt init --ide`; edits here are replaced) -->"
END = "<!-- loopengt:end -->"


@dataclass(frozen=True)
class Change:
    """What one file should become."""

    path: Path
    action: Action
    text: str | None = None
    """The whole new content (None when unchanged or refused)."""
    reason: str | None = None
    """Why a file is refused."""

    def apply(self) -> None:
        """Write the new content atomically (a crash leaves the old file or the new one)."""
        if self.text is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(self.text)
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o7777)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _read(path: Path) -> str | None:
    """The file's text, None if it does not exist; `_Refused` if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise _Refused("not UTF-8 text") from None
    except OSError as exc:
        raise _Refused(exc.strerror or str(exc)) from None


class _Refused(Exception):
    pass


def _change(path: Path, old: str | None, new: str) -> Change:
    if old == new:
        return Change(path, "unchanged")
    return Change(path, "created" if old is None else "updated", new)


def owned(path: Path, text: str) -> Change:
    """A file loopengt writes whole (a rule, command, skill or workflow of its own)."""
    try:
        return _change(path, _read(path), text)
    except _Refused as exc:
        return Change(path, "refused", reason=str(exc))


def json_entry(path: Path, keys: tuple[str, ...], value: Mapping[str, Any]) -> Change:
    """``value`` set at ``keys`` (e.g. `mcpServers`, `loopengt`) of a JSON object file, every
    other key kept. An unchanged entry leaves the file's bytes alone, whatever its style."""
    try:
        old = _read(path)
        data = _json_object(old)
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise _Refused(f"{key!r} is a {type(child).__name__}, not an object")
            node = child
    except _Refused as exc:
        return Change(path, "refused", reason=str(exc))
    if node.get(keys[-1]) == value:
        return Change(path, "unchanged")
    node[keys[-1]] = dict(value)
    return _change(path, old, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _json_object(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Refused(
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise _Refused(f"holds a JSON {type(data).__name__}, not an object")
    return data


def toml_entry(path: Path, keys: tuple[str, ...], value: Mapping[str, Any]) -> Change:
    """``value`` as the table at ``keys`` (e.g. `mcp_servers`, `loopengt`) of a TOML file,
    with every other table, key and comment kept as written (tomlkit round-trips them).

    TOML can spell the same data as `[a.b]` tables, dotted keys or inline tables, and a table
    inserted in the wrong place silently adopts the keys below it. So every candidate text
    is parsed back and must equal the old data plus the entry, or the file is refused."""
    import tomllib

    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        old = _read(path)
        data = tomlkit.parse(old or "").unwrap()
    except _Refused as exc:
        return Change(path, "refused", reason=str(exc))
    except TOMLKitError as exc:
        return Change(path, "refused", reason=f"not valid TOML ({exc})")
    node: Any = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return Change(path, "refused", reason=f"{key!r} is not a table")
    if node.get(keys[-1]) == dict(value):
        return Change(path, "unchanged")
    node[keys[-1]] = dict(value)
    for render in (_toml_nested, _toml_appended):
        try:
            text = render(old or "", keys, value)
            if tomllib.loads(text) == data:
                return _change(path, old, text)
        except (TOMLKitError, tomllib.TOMLDecodeError, ValueError, TypeError):
            continue
    return Change(
        path, "refused", reason=f"cannot add [{'.'.join(keys)}] without changing other keys"
    )


def _toml_nested(old: str, keys: tuple[str, ...], value: Mapping[str, Any]) -> str:
    """The entry as a table inside the existing ones (inline if its parent is inline)."""
    import tomlkit
    from tomlkit.items import InlineTable

    doc = tomlkit.parse(old)
    node: Any = doc
    for key in keys[:-1]:
        if key not in node:
            node[key] = tomlkit.table(is_super_table=True)
        node = node[key]
    entry = tomlkit.inline_table() if isinstance(node, InlineTable) else tomlkit.table()
    entry.update(value)
    node[keys[-1]] = entry
    return tomlkit.dumps(doc)


def _toml_appended(old: str, keys: tuple[str, ...], value: Mapping[str, Any]) -> str:
    """The entry as a `[a.b]` table at the end: valid after dotted keys defining `a`."""
    import tomlkit

    nested: dict[str, Any] = dict(value)
    for key in reversed(keys):
        nested = {key: nested}
    text = old.rstrip("\n")
    return (text + "\n\n" if text else "") + tomlkit.dumps(nested)


def markdown_section(path: Path, body: str) -> Change:
    """``body`` between loopengt's markers in a Markdown file the user owns (AGENTS.md):
    replaced there if the markers exist, else appended; the rest of the file is kept."""
    section = f"{BEGIN}\n{body.strip()}\n{END}\n"
    try:
        old = _read(path)
    except _Refused as exc:
        return Change(path, "refused", reason=str(exc))
    if old is None or not old.strip():
        return _change(path, old, section)
    start = old.find(BEGIN.split(" (")[0])
    if start < 0:
        return _change(path, old, old.rstrip("\n") + "\n\n" + section)
    end = old.find(END, start)
    if end < 0:
        return Change(path, "refused", reason=f"a loopengt begin marker without {END}")
    tail = old[end + len(END) :].removeprefix("\n")
    return _change(path, old, old[:start] + section + tail)


def read_entry(path: Path, keys: tuple[str, ...]) -> Any:
    """The value at ``keys`` of a JSON or TOML (by suffix) config file; None if the file or
    the entry is missing; `ValueError` if the file does not parse."""
    try:
        text = _read(path)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    if text is None:
        return None
    if path.suffix == ".toml":
        import tomllib

        try:
            node: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not valid TOML ({exc})") from None
    else:
        try:
            node = _json_object(text)
        except _Refused as exc:
            raise ValueError(str(exc)) from None
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node
