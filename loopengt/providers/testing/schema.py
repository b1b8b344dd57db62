"""JSON values for a JSON Schema: what `TestModel` answers a structured-output call with."""

from __future__ import annotations

import importlib
import math
import re
import string
from collections.abc import Mapping
from typing import Any

# -- JSON values for a JSON Schema ------------------------------------------------------------

MAX_DEPTH = 40  # nested schemas deeper than this are unsatisfiable recursion: give up
FULL_DEPTH = 6  # deeper than this, only required properties and minItems are generated
FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "test@example.com",
    "uri": "https://example.com/test",
    "url": "https://example.com/test",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}
_POOL = "a" + string.ascii_letters + string.digits + " " + string.punctuation
_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def sample_json(schema: Mapping[str, Any]) -> Any:
    """A JSON value valid against ``schema``, the same every time.

    What ``TestModel`` answers a structured-output request or a tool's parameters with:
    ``const``; an ``enum``'s first value; the first option of ``anyOf``/``oneOf`` that is not
    null; ``allOf`` merged; local ``$ref``s followed; objects with every property (required
    or not); strings ``"test <property>"`` fitted to ``minLength``/``maxLength``, or made
    from a simple ``pattern``, or a sample of a common ``format``; the smallest number in
    ``minimum``/``maximum`` (0 when unbounded); ``true``; arrays of ``minItems`` items (at
    least one), each slightly different so ``uniqueItems`` holds. Schemas beyond that (a
    ``pattern`` with lookarounds, ``not``, ``if``/``then``) may get a value that does not
    validate; ``TestModel(structured=...)`` or ``ScriptedModel`` then give the exact reply.
    """
    return _Sampler(dict(schema)).value(dict(schema), key=None, variant=0, depth=0)


class _Sampler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def value(self, schema: Any, key: str | None, variant: int, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return None
        if schema is True or not isinstance(schema, dict):
            return self.string({}, key, variant)
        schema = self.flatten(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][variant % len(schema["enum"])]
        kind = self.kind(schema)
        if kind == "object":
            return self.object(schema, variant, depth)
        if kind == "array":
            return self.array(schema, key, depth)
        if kind in ("integer", "number"):
            return self.number(schema, kind == "integer", variant)
        if kind == "boolean":
            return variant != 1
        if kind == "null":
            return None
        return self.string(schema, key, variant)

    def flatten(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """``schema`` with its ``$ref``, ``allOf`` and first ``anyOf``/``oneOf`` option merged
        in, so what is left is one plain schema."""
        for _ in range(MAX_DEPTH):
            if isinstance(schema.get("$ref"), str):
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = _merge(self.resolve(schema["$ref"]), rest)
            elif isinstance(schema.get("allOf"), list):
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    if isinstance(part, dict):
                        rest = _merge(rest, part)
                schema = rest
            else:
                options = next(
                    (schema[k] for k in ("anyOf", "oneOf") if isinstance(schema.get(k), list)),
                    None,
                )
                if not options:
                    return schema
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                usable = [o for o in options if isinstance(o, dict)]
                chosen = next((o for o in usable if not _is_null(o)), usable[0] if usable else {})
                schema = _merge(rest, chosen)
        return schema

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"cannot follow $ref {ref!r}: only local references are supported")
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return dict(node) if isinstance(node, dict) else {}

    @staticmethod
    def kind(schema: dict[str, Any]) -> str:
        declared = schema.get("type")
        if isinstance(declared, list):
            declared = next((t for t in declared if t != "null"), declared[0] if declared else None)
        if isinstance(declared, str):
            return declared
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    def object(self, schema: dict[str, Any], variant: int, depth: int) -> dict[str, Any]:
        found = schema.get("properties")
        properties: dict[str, Any] = found if isinstance(found, dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        wanted = list(required)
        if depth < FULL_DEPTH:  # optional ones too, but a recursive schema must end
            wanted += [name for name in properties if name not in required]
        limit = _count(schema, "maxProperties")
        if limit is not None:
            wanted = wanted[: max(limit, len(required))]
        extra = schema.get("additionalProperties", True)
        other = extra if isinstance(extra, dict) else {}
        out: dict[str, Any] = {}
        for name in wanted:
            out[name] = self.value(properties.get(name, other), name, variant, depth + 1)
        least = _count(schema, "minProperties") or 0
        number = 0
        while len(out) < least and extra is not False:
            number += 1
            if f"key{number}" not in out:
                out[f"key{number}"] = self.value(other, f"key{number}", variant, depth + 1)
        return out

    def array(self, schema: dict[str, Any], key: str | None, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix if isinstance(prefix, list) else []
        count = max(_count(schema, "minItems") or 0, len(prefix), 1 if depth < FULL_DEPTH else 0)
        if items is False:
            count = min(count, len(prefix))
        most = _count(schema, "maxItems")
        if most is not None:
            count = min(count, most)
        name = _singular(key)
        return [
            self.value(prefix[i] if i < len(prefix) else items, name, i, depth + 1)
            for i in range(count)
        ]

    @staticmethod
    def number(schema: dict[str, Any], integer: bool, variant: int) -> int | float:
        low, high = _number(schema, "minimum"), _number(schema, "maximum")
        ex_low, ex_high = _number(schema, "exclusiveMinimum"), _number(schema, "exclusiveMaximum")
        if schema.get("exclusiveMinimum") is True:  # draft 4: a flag on minimum
            ex_low, low = low, None
        if schema.get("exclusiveMaximum") is True:
            ex_high, high = high, None

        def fits(x: float) -> bool:
            return (
                (low is None or x >= low)
                and (ex_low is None or x > ex_low)
                and (high is None or x <= high)
                and (ex_high is None or x < ex_high)
            )

        lower: list[float] = [] if low is None else [low]
        if ex_low is not None:
            uppers = [h for h in (high, ex_high) if h is not None]
            gap = min(1.0, (min(uppers) - ex_low) / 2) if uppers else 1.0
            lower.append(math.floor(ex_low) + 1 if integer else ex_low + gap)
        start: float
        if lower:
            start = math.ceil(max(lower)) if integer else max(lower)
        elif fits(0):
            start = 0
        else:  # only an upper bound, below zero
            start = high if high is not None else (ex_high or 0) - 1
            start = math.floor(start) if integer else start
        multiple = _number(schema, "multipleOf")
        step = multiple if multiple is not None and multiple > 0 else 1
        if step != 1:
            start = math.ceil(start / step) * step
        if variant and fits(start + variant * step):
            start += variant * step
        if integer or float(start).is_integer():
            return int(start)
        return float(start)

    @staticmethod
    def string(schema: dict[str, Any], key: str | None, variant: int) -> str:
        least = _count(schema, "minLength") or 0
        most = _count(schema, "maxLength")
        found = schema.get("pattern")
        pattern = found if isinstance(found, str) else None

        def ok(text: str) -> bool:
            if len(text) < least or (most is not None and len(text) > most):
                return False
            return pattern is None or re.search(pattern, text) is not None

        def fit(text: str) -> str:
            if len(text) < least:
                text += "x" * (least - len(text))
            return text if most is None else text[:most]

        base = f"test {key}" if key else "test"
        if variant:
            base += f" {variant + 1}"
        candidates: list[str] = []
        if pattern is not None:
            for repeat in (1, 0, least, most or least):
                made = _regex_sample(pattern, repeat)
                if made is not None:
                    candidates += [made, fit(made)]
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in FORMATS:
            candidates.append(FORMATS[fmt])
        candidates += [fit(base), fit("a"), fit("0"), "", " "]
        return next((c for c in candidates if ok(c)), candidates[0])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Two schemas that must both hold, as one (properties and required are combined)."""
    merged = {**base, **extra}
    if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
        merged["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return merged


def _is_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or ("const" in schema and schema["const"] is None)


def _number(schema: dict[str, Any], key: str) -> float | None:
    x = schema.get(key)
    return x if isinstance(x, int | float) and not isinstance(x, bool) else None


def _count(schema: dict[str, Any], key: str) -> int | None:
    x = schema.get(key)
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None


def _singular(key: str | None) -> str | None:
    """The name of one item of a list property: "facts" -> "fact"."""
    if key and key.endswith("s") and not key.endswith("ss") and len(key) > 2:
        return key[:-1]
    return key


def _regex_sample(pattern: str, repeat: int) -> str | None:
    """A string the regex ``pattern`` matches, built from its parse tree (``repeat`` times
    for open quantifiers); None for what this does not handle. Checked by the caller."""
    try:
        parser: Any = importlib.import_module("re._parser")
        tree = parser.parse(pattern)
        return _emit(list(tree), max(repeat, 0), {})
    except Exception:  # private module, unusual constructs: the caller falls back
        return None


def _emit(items: list[Any], repeat: int, groups: dict[int, str]) -> str:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_pick_in(arg))
        elif name == "CATEGORY":
            out.append(next(c for c in _POOL if re.fullmatch(_CATEGORIES[str(arg)], c)))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            times = min(max(low, repeat), high)
            out.append("".join(_emit(list(sub), repeat, groups) for _ in range(times)))
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            group, sub = (arg[0], arg[-1]) if name == "SUBPATTERN" else (None, arg)
            text = _emit(list(sub), repeat, groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif name == "BRANCH":
            out.append(_emit(list(arg[1][0]), repeat, groups))
        elif name == "GROUPREF":
            out.append(groups.get(arg, ""))
        elif name not in ("AT", "ASSERT", "ASSERT_NOT"):
            raise ValueError(f"unsupported regex construct {name}")
    return "".join(out)


def _pick_in(items: list[Any]) -> str:
    """A character of the class ``[...]`` whose parsed ``items`` are given."""
    negated = any(str(op) == "NEGATE" for op, _ in items)

    def member(c: str) -> bool:
        for op, arg in items:
            name = str(op)
            if name == "LITERAL" and c == chr(arg):
                return True
            if name == "RANGE" and arg[0] <= ord(c) <= arg[1]:
                return True
            if name == "CATEGORY" and re.fullmatch(_CATEGORIES[str(arg)], c):
                return True
        return False

    if not negated:  # a class's own first member reads better than a pool character
        op, arg = items[0]
        if str(op) == "LITERAL":
            return chr(arg)
        if str(op) == "RANGE":
            return chr(arg[0])
    return next(c for c in _POOL if member(c) != negated)
