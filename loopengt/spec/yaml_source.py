"""Safe YAML loading that remembers where every value came from.

PyYAML's composer gives us nodes with marks; we build plain Python data from them ourselves
so that we can (a) record a line/column for every path, (b) refuse non-standard tags such as
``!!python/object`` instead of constructing them, and (c) bound how much data aliases may
expand to, which defeats "billion laughs" documents.
"""

from __future__ import annotations

import re
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
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_SURROGATE = re.compile("[\ud800-\udfff]")


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
        # each mapping's entries with `<<` merges resolved, by node: an anchored mapping is
        # resolved once however often it is merged or aliased
        self._entries: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}
        self._resolving: set[int] = set()

    def fail(self, node: yaml.Node, message: str, path: Path = ()) -> YamlLoadError:
        line, col = _pos(node)
        return YamlLoadError(Problem(path, message, line, col))

    def count(self, node: yaml.Node, added: int = 1) -> None:
        self.nodes += added
        if self.nodes > MAX_NODES:
            raise self.fail(
                node,
                f"document expands to more than {MAX_NODES:,} values (through aliases or "
                "sheer size); refusing it",
            )

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        self.count(node)
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; refusing it")
        self.source.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key, (key_node, value_node) in self.entries(node, path, depth).items():
                self.count(key_node)
                child = (*path, key)
                self.source.keys.setdefault(child, _pos(key_node))
                result[key] = self.build(value_node, child, depth + 1)
            return result
        raise self.fail(node, "unsupported YAML node", path)  # pragma: no cover - PyYAML has 3

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError, KeyError, AttributeError) as exc:
            # a scalar that looks like (or is tagged as) a date, number or boolean but is not
            # one: 2024-13-01, `!!bool maybe`, an integer with more digits than Python converts
            kind = node.tag.rpartition(":")[2]
            reason = f": {str(exc).split(';')[0]}" if isinstance(exc, ValueError) else ""
            raise self.fail(node, f"invalid {kind} {_short(node.value)}{reason}", path) from None
        if isinstance(value, str) and _SURROGATE.search(value):
            value = self.join_surrogates(node, value, path)
        return value

    def join_surrogates(self, node: yaml.Node, value: str, path: Path) -> str:
        """PyYAML reads a "\\ud83d\\ude00" escape (as JSON writes characters outside the
        BMP) as two lone surrogates; join each pair into its character, as JSON does. A lone
        one cannot be encoded anywhere (traces, prompts), so it is refused."""
        joined = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        lone = _SURROGATE.search(joined)
        if lone is None:
            return joined
        message = f"\\u{ord(lone[0]):04x} is half of a surrogate pair; write the character itself"
        raise self.fail(node, message, path)

    def key(self, node: yaml.Node, path: Path, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; refusing it")
        if not isinstance(node, yaml.ScalarNode):
            if node.tag not in (_SEQ_TAG, _MAP_TAG):
                raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
            raise self.fail(node, "mapping keys must be plain scalars", path)
        if node.tag == _VALUE_TAG:  # a bare `=` key: PyYAML reads it as the string "="
            return str(node.value)
        key = self.scalar(node, path)
        if not isinstance(key, str):
            # every mapping of a LoopSpec is keyed by names; `on:` or `1:` would otherwise
            # fail later as a non-string key with a puzzling path
            kind = _KINDS.get(type(key), type(key).__name__)
            message = f"key {node.value!r} is read as {kind}, not text; quote it: '{node.value}'"
            raise self.fail(node, message, path)
        return key

    def entries(
        self, node: yaml.MappingNode, path: Path, depth: int
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping's keys -> (key node, value node), with `<<` merge keys resolved as YAML
        says: the mapping's own keys win over merged ones, and an earlier merged mapping
        wins over a later one. Duplicate own keys are refused."""
        if node.tag != _MAP_TAG:
            raise self.fail(node, f"unsupported YAML tag {node.tag!r} (only plain data)", path)
        known = self._entries.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; refusing it")
        if id(node) in self._resolving:
            raise self.fail(node, "a '<<' merge includes the mapping it is in", path)
        self._resolving.add(id(node))
        own: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.key(key_node, path, depth + 1)
            if key in own:
                raise self.fail(key_node, f"duplicate key {key!r}", (*path, key))
            own[key] = (key_node, value_node)
        for value_node in merges:
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    message = "'<<' merges a mapping or a list of mappings"
                    raise self.fail(source, message, path)
                merged = self.entries(source, path, depth + 1)
                self.count(node, len(merged))  # merging is work too: bound it like aliases
                for key, entry in merged.items():
                    own.setdefault(key, entry)
        self._resolving.discard(id(node))
        self._entries[id(node)] = own
        return own


_KINDS = {bool: "a boolean", int: "a number", float: "a number", type(None): "null"}


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


_LONG_ESCAPE = re.compile(r"\\U([0-9A-Fa-f]{8})")


def _bad_escape(text: str) -> Problem:
    """Where a double-quoted string escapes a code point no character has."""
    found = next((m for m in _LONG_ESCAPE.finditer(text) if int(m[1], 16) > 0x10FFFF), None)
    shown = f" {found[0]}" if found else ""
    message = f"YAML syntax error: the escape{shown} is beyond U+10FFFF, the last character"
    return Problem((), message, *_line_col(text, found.start() if found else 0))


def _line_col(text: str, pos: int) -> tuple[int, int]:
    """The 1-based line and column of character ``pos``."""
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


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
        message = f"YAML syntax error: character #x{exc.character:04x} is not allowed"
        raise YamlLoadError(Problem((), message, *_line_col(text, exc.position))) from None
    except yaml.YAMLError as exc:
        raise YamlLoadError(Problem((), f"YAML error: {exc}", 1, 1)) from None
    except ValueError:  # PyYAML's chr() of a "\U..." escape beyond U+10FFFF
        raise YamlLoadError(_bad_escape(text)) from None
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
