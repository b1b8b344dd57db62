"""Safe YAML loading that remembers where every value came from.

PyYAML's composer gives us nodes with marks; we build plain Python data from them ourselves
so that we can (a) record a line/column for every path, (b) refuse non-standard tags such as
``!!python/object`` instead of constructing them, and (c) bound how much data aliases may
expand to, which defeats "billion laughs" documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from loopengt.spec.errors import Problem

MAX_SPEC_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 64

Path = tuple[str | int, ...]

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


@dataclass
class SourceMap:
    """Line/column (1-based) of each value, and of each mapping key, by path."""

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path, *, prefer_key: bool = False) -> tuple[int, int]:
        """Position of ``path``, or of its nearest ancestor that exists in the source."""
        p = tuple(path)
        while True:
            if prefer_key and p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return (1, 1)
            p = p[:-1]


class YamlLoadError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.source = SourceMap()
        self.nodes = 0
        self._constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, message: str, path: Path = ()) -> YamlLoadError:
        line, col = _pos(node)
        return YamlLoadError(Problem(path, message, line, col))

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(
                node,
                f"document expands to more than {MAX_NODES:,} values (through aliases or "
                "sheer size); refusing it",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; refusing it")
        self.source.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
            return self._constructor.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
            self._constructor.flatten_mapping(node)  # resolves `<<:` merge keys
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path, depth + 1)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise self.fail(key_node, "mapping keys must be plain scalars", path)
                if key in result:
                    raise self.fail(key_node, f"duplicate key {key!r}", (*path, str(key)))
                child = (*path, key if isinstance(key, str | int) else str(key))
                self.source.keys[child] = _pos(key_node)
                result[key] = self.build(value_node, child, depth + 1)
            return result
        raise self.fail(node, "unsupported YAML node", path)  # pragma: no cover - PyYAML has 3


def load_yaml(text: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map.

    Raises :class:`YamlLoadError` with the position of the first problem.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        raise YamlLoadError(
            Problem((), f"spec is larger than {MAX_SPEC_BYTES / 1e6:g} MB; refusing it", 1, 1)
        )
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        raise YamlLoadError(Problem((), f"YAML syntax error: {reason}", line, col)) from None
    except yaml.reader.ReaderError as exc:  # a control character; its str() spans two lines
        pos = exc.position
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        message = f"YAML syntax error: character #x{exc.character:04x} is not allowed"
        raise YamlLoadError(Problem((), message, line, col)) from None
    except yaml.YAMLError as exc:
        raise YamlLoadError(Problem((), f"YAML error: {exc}", 1, 1)) from None
    except RecursionError:
        raise YamlLoadError(
            Problem((), f"nesting deeper than {MAX_DEPTH} levels; refusing it", 1, 1)
        ) from None
    if len(nodes) > 1:
        line, col = _pos(nodes[1])
        raise YamlLoadError(Problem((), "expected one YAML document, found several", line, col))
    if not nodes or nodes[0] is None:
        raise YamlLoadError(Problem((), "spec is empty", 1, 1))
    builder = _Builder()
    try:
        data = builder.build(nodes[0], ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlLoadError(Problem((), f"invalid YAML value: {exc.problem}", line, col)) from None
    return data, builder.source
