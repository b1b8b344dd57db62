"""Plain data and the files we write from it (traces, cassettes)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def as_text(output: Any) -> str:
    """A step output as text: strings as they are, structured outputs as JSON."""
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (objects the json module cannot write become text), so
    what is kept in memory equals what is read back from a file."""
    return json.loads(json.dumps(value, default=json_default, ensure_ascii=False))


def json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        try:
            return value.model_dump(mode="json")
        except Exception:  # a model that cannot dump itself is still shown as text
            return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def write_atomically(path: Path, text: str) -> None:
    """Readers never see a half-written file, and a process killed mid-write leaves the
    previous complete one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
