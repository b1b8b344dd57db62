"""Fuzzed LoopSpecs: validation never crashes or hangs, and what it accepts compiles.

Hypothesis builds spec documents three ways:

* the shipped specs (``examples/*.yaml``, ``templates/*/loop.yaml``) with their free text,
  numbers and models varied within the rules;
* specs generated from the LoopSpec's structure for every pattern (agents, steps with a
  dependency DAG, prompts that name inputs and upstream steps, tools, gates, policy,
  pattern blocks, custom graphs);
* either of these mutated: keys dropped or renamed, values of the wrong type, dangling or
  reserved references, duplicated names, cycles, placeholder tricks, random scalars and
  unicode, and, on the YAML text, inserted characters, tags, anchors and cuts.

For each document, validation (``load_spec_text``, what ``loopengt validate`` runs) must
either return a spec or raise :class:`SpecError` whose every line is
``FILE:LINE:COL: ...`` within the document; it must not take more than the deadline; and
a spec it accepts must compile with :func:`loopengt.compile.compile_spec` on the shipped
test model. A few documents also go through the real ``loopengt validate`` process.
"""

from __future__ import annotations

import copy
import json
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopengt.compile import compile_spec
from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.providers.testing import TestModel
from loopengt.spec import LoopSpec, SpecError, load_spec_text
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("templates/*/loop.yaml")])
CORPUS = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in SHIPPED]
FILENAME = "fuzz.yaml"
PROBLEM_LINE = re.compile(rf"^{re.escape(FILENAME)}:(\d+):(\d+): \S")
# YAML 1.1 (PyYAML) counts these as line breaks: its lines are what problems report
YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
# characters YAML 1.1 refuses unescaped (raw in JSON with ensure_ascii=False)
NOT_YAML_PRINTABLE = re.compile(
    "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
HARD_TIMEOUT_SECONDS = 20  # a hang, not a slow example: the deadline catches those
DEADLINE = timedelta(seconds=3)
FUNCTION_TOOL = "tests.compilers.helpers:add"
RAW_MARKER = "RAW-YAML-HERE"

PATTERNS = [
    "sequential",
    "supervisor_worker",
    "parallel_fan_out",
    "handoff",
    "evaluator_optimizer",
    "custom",
]
MODELS = ["test", "local", "openai:gpt-4o-mini", "anthropic:claude-3-5-haiku", "ollama:llama3"]
REGEXES = [r"\S", r"^\w+", r"(?i)done", r"[0-9]{1,3}", r"APPROVED|LGTM"]
SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 5},
    {"type": "string", "maxLength": 200},
    {"enum": ["yes", "no"]},
]

# -- building blocks ---------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_-]{0,9}", fullmatch=True).filter(lambda n: "__" not in n)
# free text: any unicode but surrogates, without the placeholder braces
free_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40).map(
    lambda s: s.replace("{{", "{").replace("}}", "}")
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), free_text, st.floats(-1e6, 1e6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
# anything a mutation may put where a value was: other types, edge numbers, odd strings
WILD_SCALARS = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    1.5,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    " ",
    "END",
    "START",
    "__start__",
    "__end__",
    "input",
    "goal",
    "steps",
    "null",
    "yes",
    "1.0",
    "a b",
    "a:b",
    ":",
    "os:system",
    "builtins:eval",
    ".relative:x",
    "x:",
    ":x",
    "input.",
    "input.nope",
    "visits.",
    "visits.nope",
    "ünïcödé",
    "名前",
    "emoji🙂",
    "tab\there",
    "new\nline",
    "nul\x00byte",
    "bidi\u202eevil",
    "x" * 5000,
    "{{input.__class__}}",
    "{{input.__class__.__mro__}}",
    "{0.__class__}",
    "{{steps.nope}}",
    "{{ }}",
    "{{feedback}}{{item}}{{task}}",
]
wild_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(WILD_SCALARS),
    json_values,
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.lists(st.sampled_from(WILD_SCALARS), max_size=3),
    st.dictionaries(st.sampled_from(WILD_SCALARS[10:20]), json_scalars, max_size=2),
)
BAD_REGEXES = ["(", "[z-a]", "a{4294967296}", "(" * 300 + ")" * 300, "(?P<1>x)", "\\", "*"]
ODD_SCHEMAS: list[Any] = [
    {"type": 5},
    {"type": "object", "properties": {"a": {"pattern": "("}}},
    {"pattern": "a{4294967296}"},
    {"$ref": "#/definitions/nope"},
    {"$ref": "http://127.0.0.1:9/schema.json"},
    {"type": "object", "properties": {"a b": {"type": "string"}, "": {}}, "required": ["a b"]},
    {"type": "object", "additionalProperties": False},
    {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": ["string", "null"]},
    {"items": [{"type": "string"}]},
    {"minimum": "x"},
    {"properties": {"a": {"properties": {"b": {"properties": {"c": {"type": "string"}}}}}}},
    True,
    False,
    {},
    [],
]
# raw YAML put where a value was (through a marker replaced after dumping)
RAW_YAML = [
    "2001-13-45",
    "2024-02-30T25:61:00",
    "!!bool maybe",
    "!!int x",
    "!!float x",
    "!!timestamp x",
    "!!str 5",
    "!!null x",
    "!!binary aGk=",
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!omap [{a: 1}]",
    "!local x",
    "*undefined",
    "&x [a, *x]",
    "[*nope]",
    "{<<: 5}",
    "{<<: [a]}",
    "{on: 1}",
    "{1: a}",
    "{~: a}",
    "{=: a}",
    "{a: 1, a: 2}",
    "9" * 5000,
    "0o17",
    "0x_ff",
    "1_000",
    ".inf",
    "-.inf",
    ".nan",
    "1e999",
    '"\\ud83d\\ude00"',
    '"\\ud83d"',
    '"\\udc00x"',
    '"\\U0001F600"',
    '"\\x00"',
    "? [a]",
]
FIELD_NAMES = [
    "name",
    "goal",
    "agents",
    "steps",
    "tools",
    "policy",
    "pattern",
    "agent",
    "depends_on",
    "dependencies",
    "prompt",
    "gate",
    "kind",
    "inputs",
    "supervisor",
    "evaluator",
    "fan_out",
    "handoff",
    "graph",
    "edges",
    "branches",
    "when",
    "to",
    "from",
    "entry",
    "max_turns",
    "stop_conditions",
    "approvals",
    "map_over",
    "map_step",
    "aggregator",
    "workers",
    "handoffs",
    "model",
    "schema",
    "output_schema",
    "metadata",
]


def subset(draw: st.DrawFn, items: list[str], *, min_size: int = 0) -> list[str]:
    if not items:
        return []
    chosen = draw(st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items)))
    return list(dict.fromkeys(chosen))


def maybe(
    draw: st.DrawFn, target: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]
) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


def prompt(draw: st.DrawFn, refs: list[str]) -> str:
    """Free text with placeholders drawn from ``refs`` (each one valid where it is used)."""
    parts = draw(
        st.lists(st.one_of(free_text, st.sampled_from(refs) if refs else free_text), max_size=5)
    )
    return " ".join(parts) or "Do the task."


def upstream(name: str, requires: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(requires.get(name, []))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(requires.get(dep, []))
    return seen


@st.composite
def gate(draw: st.DrawFn, agents: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["regex", "json_schema", "llm_judge", "verifier"]))
    out: dict[str, Any] = {"kind": kind}
    if kind == "regex":
        out["pattern"] = draw(st.sampled_from(REGEXES))
    elif kind == "json_schema":
        out["schema"] = draw(st.sampled_from(SCHEMAS).map(copy.deepcopy))
    elif kind == "llm_judge":
        out["criteria"] = draw(free_text.filter(bool)) if draw(st.booleans()) else "It is done."
        maybe(draw, out, "judge", st.sampled_from(agents))
    else:
        out["verifier"] = FUNCTION_TOOL  # any callable verifies
    maybe(draw, out, "on_fail", st.sampled_from(["retry", "stop"]))
    maybe(draw, out, "max_attempts", st.integers(1, 5))
    return out


@st.composite
def base_spec(draw: st.DrawFn, pattern: str) -> dict[str, Any]:
    """The parts every pattern shares: agents, tools, inputs, steps with a DAG, a policy.

    Pattern generators adjust what their pattern needs (roles, blocks, limits)."""
    min_agents = 2 if pattern in ("supervisor_worker", "handoff") else 1
    agents = draw(st.lists(names, min_size=min_agents, max_size=4, unique=True))
    min_steps = {"evaluator_optimizer": 2, "parallel_fan_out": 2, "custom": 1}.get(pattern, 1)
    if pattern in ("supervisor_worker", "handoff"):
        min_steps = 0
    step_names = draw(st.lists(names, min_size=min_steps, max_size=6, unique=True))
    inputs = draw(st.lists(names, max_size=3, unique=True))
    tool_names = draw(st.lists(names, max_size=3, unique=True))

    doc: dict[str, Any] = {"name": draw(free_text.filter(str.strip)), "goal": "Do it well."}
    if draw(st.booleans()):
        doc["goal"] = draw(free_text.filter(str.strip))
    maybe(draw, doc, "version", st.sampled_from(["1.0", 1.0, "0.1.0", 2]))
    maybe(draw, doc, "description", free_text)
    doc["pattern"] = pattern
    if inputs or draw(st.booleans()):
        doc["inputs"] = {}
        for key in inputs:
            spec: dict[str, Any] = {}
            maybe(draw, spec, "description", free_text)
            maybe(draw, spec, "required", st.booleans())
            maybe(draw, spec, "default", json_values)
            doc["inputs"][key] = spec

    tools = []
    for tool in tool_names:
        kind = draw(st.sampled_from(["builtin", "function", "mcp_url", "mcp_command"]))
        entry: dict[str, Any] = {"name": tool}
        if kind == "builtin":
            entry["kind"] = "builtin"
            entry["builtin"] = draw(st.sampled_from(["read_file", "list_dir", "http_get"]))
        elif kind == "function":
            entry.update(kind="function", function=FUNCTION_TOOL)
        elif kind == "mcp_url":
            entry.update(kind="mcp", url="http://127.0.0.1:9/mcp")
        else:
            entry.update(kind="mcp", command="true", args=draw(st.lists(free_text, max_size=2)))
        maybe(draw, entry, "description", free_text)
        tools.append(entry)
    if tools:
        doc["tools"] = tools

    goal_refs = ["{{goal}}", *(f"{{{{input.{k}}}}}" for k in inputs)]
    agent_docs = []
    for name in agents:
        agent: dict[str, Any] = {"name": name}
        maybe(draw, agent, "description", free_text)
        if draw(st.booleans()):
            agent["instructions"] = prompt(draw, goal_refs)
        maybe(draw, agent, "capabilities", st.lists(free_text, max_size=2))
        maybe(draw, agent, "model", st.sampled_from(MODELS))
        maybe(draw, agent, "temperature", st.floats(0, 2))
        if tool_names and draw(st.booleans()):
            agent["tools"] = subset(draw, tool_names)
        maybe(draw, agent, "max_tool_calls", st.integers(0, 10))
        maybe(draw, agent, "memory", st.booleans())
        maybe(draw, agent, "max_tokens", st.integers(1, 4096))
        agent_docs.append(agent)
    doc["agents"] = agent_docs

    requires: dict[str, list[str]] = {}
    step_docs = []
    variables = {
        "evaluator_optimizer": ["{{feedback}}"],
        "custom": ["{{feedback}}"],
        "parallel_fan_out": ["{{item}}"],
        "supervisor_worker": ["{{task}}"],
        "handoff": ["{{task}}"],
    }.get(pattern, [])
    for i, name in enumerate(step_names):
        step: dict[str, Any] = {"name": name}
        deps = subset(draw, step_names[:i])
        requires[name] = deps
        if deps:
            if draw(st.integers(0, 4)) == 0:  # the seed-0.1.0 spelling
                step["dependencies"] = [{"step_name": d} for d in deps]
            else:
                step["depends_on"] = deps
        if len(agents) > 1 or draw(st.booleans()):
            step["agent"] = draw(st.sampled_from(agents))
        # sequential: a prompt names only steps that run before; other patterns: any step
        visible = sorted(upstream(name, requires)) if pattern == "sequential" else step_names
        refs = [*goal_refs, *variables]
        for ref in visible:
            refs += [f"{{{{{ref}}}}}", f"{{{{steps.{ref}}}}}", f"{{{{steps.{ref}.answer}}}}"]
        if draw(st.integers(0, 3)):
            step["prompt"] = prompt(draw, refs)
        maybe(draw, step, "description", free_text)
        if draw(st.integers(0, 3)) == 0:
            step["output_schema"] = draw(st.sampled_from(SCHEMAS).map(copy.deepcopy))
        if draw(st.integers(0, 3)) == 0:
            step["gate"] = draw(gate(agents))
        maybe(draw, step, "model", st.sampled_from(MODELS))
        maybe(draw, step, "timeout_seconds", st.floats(0.1, 600))
        step_docs.append(step)
    doc["steps"] = step_docs

    policy: dict[str, Any] = {}
    maybe(draw, policy, "max_turns", st.integers(1, 50))
    maybe(draw, policy, "max_total_time_seconds", st.floats(1, 3600))
    maybe(draw, policy, "step_timeout_seconds", st.floats(1, 600))
    if draw(st.booleans()):
        policy["retry"] = {"attempts": draw(st.integers(1, 4))}
        maybe(draw, policy["retry"], "backoff_seconds", st.floats(0, 5))
        maybe(draw, policy["retry"], "backoff_factor", st.floats(1, 3))
    if step_names and draw(st.integers(0, 3)) == 0:
        policy["gates"] = [
            {**draw(gate(agents)), "step": draw(st.sampled_from(step_names))}
            for _ in range(draw(st.integers(1, 2)))
        ]
    if draw(st.integers(0, 2)) == 0:
        conditions = []
        for _ in range(draw(st.integers(1, 2))):
            cond: dict[str, Any] = (
                {"contains": draw(free_text)}
                if draw(st.booleans())
                else {"matches": draw(st.sampled_from(REGEXES))}
            )
            if step_names:
                maybe(draw, cond, "step", st.sampled_from(step_names))
            maybe(draw, cond, "reason", free_text)
            conditions.append(cond)
        policy["stop_conditions"] = conditions
    if step_names and draw(st.integers(0, 3)) == 0:
        chosen = subset(draw, step_names, min_size=1)
        policy["approvals"] = [
            s if draw(st.booleans()) else {"step": s, "message": draw(free_text)} for s in chosen
        ]
    if draw(st.integers(0, 3)) == 0:
        policy["budget"] = {}
        maybe(draw, policy["budget"], "max_tokens", st.integers(1, 10**6))
        maybe(draw, policy["budget"], "max_cost_usd", st.floats(0.01, 100))
    if draw(st.integers(0, 4)) == 0:
        policy["context_budget"] = draw(st.integers(100_000, 200_000))
        maybe(draw, policy, "context_mode", st.sampled_from(["trim", "summarize"]))
    if policy or draw(st.booleans()):
        doc["policy"] = policy

    if draw(st.integers(0, 3)) == 0:
        doc["defaults"] = {}
        maybe(draw, doc["defaults"], "model", st.sampled_from(MODELS))
        maybe(draw, doc["defaults"], "temperature", st.floats(0, 2))
        maybe(draw, doc["defaults"], "max_tokens", st.integers(1, 4096))
    maybe(draw, doc, "rubric", st.lists(free_text, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        doc["evals"] = {"rubric": draw(st.lists(free_text, max_size=2))}
        maybe(draw, doc["evals"], "judge_model", st.sampled_from(MODELS))
    maybe(draw, doc, "metadata", st.dictionaries(names, json_values, max_size=3))
    return doc


def needs_limit(draw: st.DrawFn, doc: dict[str, Any], block: str, key: str) -> None:
    """A looping pattern needs a turn limit, a stop condition or its block's own limit."""
    policy = doc.setdefault("policy", {})
    if policy.get("max_turns") or policy.get("stop_conditions"):
        return
    if block and draw(st.booleans()):
        doc.setdefault(block, {})[key] = draw(st.integers(1, 10))
    else:
        policy["max_turns"] = draw(st.integers(1, 30))


@st.composite
def sequential(draw: st.DrawFn) -> dict[str, Any]:
    return draw(base_spec("sequential"))


@st.composite
def supervisor_worker(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(base_spec("supervisor_worker"))
    agents = [a["name"] for a in doc["agents"]]
    if draw(st.booleans()):
        boss = draw(st.sampled_from(agents))
        block: dict[str, Any] = {"agent": boss}
        others = [a for a in agents if a != boss]
        if draw(st.booleans()):
            block["workers"] = subset(draw, others, min_size=1)
        doc["supervisor"] = block
    needs_limit(draw, doc, "supervisor" if "supervisor" in doc else "", "max_turns")
    return doc


@st.composite
def evaluator_optimizer(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(base_spec("evaluator_optimizer"))
    steps = doc["steps"]
    if draw(st.booleans()):  # a block: a generator that runs before its evaluator
        ev = draw(st.integers(1, len(steps) - 1))
        gen = draw(st.integers(0, ev - 1))
        doc["evaluator"] = {"generator": steps[gen]["name"], "evaluator": steps[ev]["name"]}
        maybe(draw, doc["evaluator"], "pass_score", st.floats(0, 1))
    needs_limit(draw, doc, "evaluator" if "evaluator" in doc else "", "max_iterations")
    return doc


@st.composite
def parallel_fan_out(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(base_spec("parallel_fan_out"))
    steps = doc["steps"]
    for step in steps:  # branches first, then an aggregator that waits for them all
        step.pop("depends_on", None)
        step.pop("dependencies", None)
    *parallel, last = steps
    last["depends_on"] = [s["name"] for s in parallel]
    block: dict[str, Any] = {}
    if draw(st.booleans()):  # one step mapped over an input list
        key = draw(names)
        doc.setdefault("inputs", {})[key] = {"description": "a list"}
        mapped = parallel[0]
        if draw(st.booleans()):
            block.update(map_step=mapped["name"], map_over=f"input.{key}")
        else:
            mapped["map_over"] = f"input.{key}"
    if draw(st.booleans()):
        block["aggregator"] = last["name"]
        if draw(st.booleans()) and "map_step" not in block:
            block["branches"] = [s["name"] for s in parallel if "map_over" not in s]
    maybe(draw, block, "max_concurrency", st.integers(1, 8))
    if block and block.get("branches") != []:
        doc["fan_out"] = block
    return doc


@st.composite
def handoff(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(base_spec("handoff"))
    agents = [a["name"] for a in doc["agents"]]
    for agent in doc["agents"]:
        if draw(st.booleans()):
            agent["handoffs"] = subset(draw, [a for a in agents if a != agent["name"]])
    if draw(st.booleans()):
        doc["handoff"] = {"entry": draw(st.sampled_from(agents))}
        maybe(draw, doc["handoff"], "share_history", st.booleans())
    needs_limit(draw, doc, "handoff" if "handoff" in doc else "", "max_handoffs")
    return doc


@st.composite
def condition(draw: st.DrawFn, steps: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["output_contains", "verdict", "counter", "verifier"]))
    if kind == "output_contains":
        when: dict[str, Any] = {"output_contains": draw(free_text)}
    elif kind == "verdict":
        when = {"verdict": draw(st.sampled_from(["pass", "fail"]))}
    elif kind == "counter":
        counter = draw(st.sampled_from(["turns", *(f"visits.{s}" for s in steps)]))
        when = {"counter": counter, "value": draw(st.integers(0, 5))}
        maybe(draw, when, "op", st.sampled_from(["<", "<=", "==", "!=", ">=", ">"]))
    else:
        when = {"verifier": FUNCTION_TOOL}
    maybe(draw, when, "step", st.sampled_from(steps))
    return when


@st.composite
def custom(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(base_spec("custom"))
    steps = [s["name"] for s in doc["steps"]]
    targets = [*steps, "END"]
    edges = []
    for source in subset(draw, steps):
        if draw(st.booleans()):
            edges.append({"from": source, "to": draw(st.sampled_from(targets))})
        else:
            branches = [
                {"when": draw(condition(steps)), "to": draw(st.sampled_from(targets))}
                for _ in range(draw(st.integers(1, 3)))
            ]
            edge: dict[str, Any] = {"from": source, "branches": branches}
            maybe(draw, edge, "default", st.sampled_from(targets))
            edges.append(edge)
    doc["graph"] = {"entry": draw(st.sampled_from(steps)), "edges": edges}
    doc.setdefault("policy", {}).setdefault("max_turns", draw(st.integers(1, 30)))
    return doc


@st.composite
def shipped_variant(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped spec with its free text, numbers and models varied within the rules."""
    doc = copy.deepcopy(draw(st.sampled_from(CORPUS)))
    for agent in doc["agents"]:
        maybe(draw, agent, "description", free_text)
        maybe(draw, agent, "model", st.sampled_from(MODELS))
        maybe(draw, agent, "temperature", st.floats(0, 2))
    for step in doc["steps"]:
        maybe(draw, step, "description", free_text)
        if "prompt" in step and draw(st.booleans()):
            step["prompt"] = draw(free_text) + "\n" + step["prompt"] + draw(free_text)
    maybe(draw, doc, "goal", free_text.filter(str.strip))
    maybe(draw, doc, "metadata", st.dictionaries(names, json_values, max_size=3))
    policy = doc.setdefault("policy", {})
    maybe(draw, policy, "max_turns", st.integers(1, 50))
    maybe(draw, policy, "step_timeout_seconds", st.floats(1, 600))
    return doc


valid_documents = st.one_of(
    shipped_variant(),
    sequential(),
    supervisor_worker(),
    evaluator_optimizer(),
    parallel_fan_out(),
    handoff(),
    custom(),
)

# -- mutations ---------------------------------------------------------------------------------


def slots(doc: Any) -> Iterator[tuple[dict[Any, Any] | list[Any], Any]]:
    """Every (container, key) of the document, depth first."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield doc, key
            yield from slots(value)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield doc, i
            yield from slots(value)


def spec_names(doc: Any) -> list[str]:
    found = []
    for container, key in slots(doc):
        if key == "name" and isinstance(container, dict) and isinstance(container[key], str):
            found.append(container[key])
    return found


def typo(draw: st.DrawFn, word: str) -> str:
    if not word:
        return "x"
    i = draw(st.integers(0, len(word) - 1))
    how = draw(st.sampled_from(["drop", "double", "swap", "upper"]))
    if how == "drop":
        return word[:i] + word[i + 1 :] or "x"
    if how == "double":
        return word[:i] + word[i] + word[i:]
    if how == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word.upper() if word.upper() != word else word + "_"


def mutate(draw: st.DrawFn, doc: Any) -> Any:
    places = list(slots(doc))
    if not places or draw(st.integers(0, 40)) == 0:
        return draw(wild_values)  # the whole document is something else
    container, key = draw(st.sampled_from(places))
    value = container[key]  # type: ignore[index]
    how = draw(
        st.sampled_from(
            [
                *["drop", "rename", "retype", "reference", "duplicate", "template"],
                *["cycle", "pattern", "regex", "schema", "raw"],
            ]
        )
    )
    if how == "drop":
        del container[key]  # type: ignore[arg-type]
    elif how == "rename" and isinstance(container, dict):
        new = draw(
            st.one_of(st.just(typo(draw, str(key))), st.sampled_from(FIELD_NAMES), wild_values)
        )
        if isinstance(new, str | int | float | bool) or new is None:
            container[new] = container.pop(key)
    elif how == "reference":
        others = spec_names(doc) or ["x"]
        other = draw(st.sampled_from(others))
        container[key] = draw(  # type: ignore[index]
            st.sampled_from([typo(draw, other), other, "END", "nope", "__end__", "input.x"])
        )
    elif how == "duplicate" and isinstance(value, list) and value:
        value.append(copy.deepcopy(draw(st.sampled_from(value))))
    elif how == "template":
        tricks = ["{{steps.%s}}", "{{%s}}", "{{input.%s}}", "{{steps.%s.x.0}}", "{{ %s }}"]
        name = draw(st.sampled_from([*spec_names(doc), "nope", "__class__", "goal"]))
        container[key] = draw(free_text) + draw(st.sampled_from(tricks)) % name  # type: ignore[index]
    elif how == "cycle" and isinstance(doc, dict) and isinstance(doc.get("steps"), list):
        steps = [s for s in doc["steps"] if isinstance(s, dict)]
        if steps:
            a, b = draw(st.sampled_from(steps)), draw(st.sampled_from(steps))
            deps = a.get("depends_on")
            a["depends_on"] = [*(deps if isinstance(deps, list) else []), b.get("name")]
    elif how == "pattern" and isinstance(doc, dict):
        doc["pattern"] = draw(st.sampled_from([*PATTERNS, "Sequential", "loop", 3]))
    elif how == "regex":
        regex_slots = [(c, k) for c, k in places if k in ("pattern", "matches")]
        target, field = draw(st.sampled_from(regex_slots or [(container, key)]))
        target[field] = draw(st.sampled_from(BAD_REGEXES))  # type: ignore[index]
    elif how == "schema":
        schema_slots = [(c, k) for c, k in places if k in ("output_schema", "schema")]
        target, field = draw(st.sampled_from(schema_slots or [(container, key)]))
        target[field] = copy.deepcopy(draw(st.sampled_from(ODD_SCHEMAS)))  # type: ignore[index]
    elif how == "raw":
        container[key] = RAW_MARKER  # type: ignore[index]
    else:
        container[key] = draw(wild_values)  # type: ignore[index]
    return doc


YAML_JUNK = [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGk=",
    "!!set {a}",
    "!custom x",
    "&a",
    "*a",
    "*undefined",
    "<<: *a",
    "? [a, b]\n: c",
    "\t",
    "\x00",
    "\ufeff",
    "\x85",
    "\u2028",
    "%YAML 1.1\n---\n",
    "---\n",
    "...\n",
    "{",
    "]",
    "'",
    '"',
    "|",
    ">-",
    "#",
    ": ",
    "- ",
    "  ",
    "2001-13-45",
    "1" * 5000,
    "0x" + "f" * 30,
    "[" * 200,
    "{a: " * 100,
]


def mutate_text(draw: st.DrawFn, text: str) -> str:
    pos = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["insert", "cut", "truncate", "junk"]))
    if how == "insert":
        return text[:pos] + draw(st.text(max_size=5)) + text[pos:]
    if how == "cut":
        return text[:pos] + text[pos + draw(st.integers(1, 40)) :]
    if how == "truncate":
        return text[:pos]
    return text[:pos] + draw(st.sampled_from(YAML_JUNK)) + text[pos:]


def dump(draw: st.DrawFn, doc: Any) -> str:
    style = draw(st.sampled_from(["block", "flow", "json"]))
    if style == "json":
        text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
        if NOT_YAML_PRINTABLE.search(text):  # JSON, but not YAML 1.1: write escapes instead
            text = json.dumps(doc)
    else:
        text = yaml.safe_dump(
            doc,
            allow_unicode=draw(st.booleans()),
            sort_keys=False,
            default_flow_style=style == "flow",
            width=10**6,  # the marker must stay on one line
        )
    while RAW_MARKER in text:
        raw = draw(st.sampled_from(RAW_YAML))
        text = text.replace(f'"{RAW_MARKER}"', raw, 1).replace(RAW_MARKER, raw, 1)
    return text


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, str]:
    """(kind, YAML text): about half valid by construction, half mutated."""
    doc = draw(valid_documents)
    kind = "generated"
    mutations = draw(st.integers(0, 3)) if draw(st.booleans()) else 0
    for _ in range(mutations):
        doc, kind = mutate(draw, doc), "mutated"
    text = dump(draw, doc)
    if draw(st.integers(0, 5)) == 0:
        text, kind = mutate_text(draw, text), "text-mutated"
    return kind, text


# -- the checks --------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the code swallows it."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang(f"no answer within {HARD_TIMEOUT_SECONDS}s")


def validate(text: str) -> LoopSpec | SpecError:
    """What `loopengt validate` does, in process: a spec, or the SpecError it raised."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HARD_TIMEOUT_SECONDS)
    try:
        return load_spec_text(text, filename=FILENAME)
    except SpecError as exc:
        return exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_problems(error: SpecError, text: str) -> None:
    """Every problem is one line `FILE:LINE:COL: ...`, pointing into the document."""
    lines = error.lines()
    assert lines, "a SpecError with no problem"
    last_line = len(YAML_LINE_BREAK.findall(text)) + 1
    for line in lines:
        assert "\n" not in line and "\r" not in line, line
        match = PROBLEM_LINE.match(line)
        assert match, line
        assert 1 <= int(match[1]) <= last_line, line
        assert int(match[2]) >= 1, line
    assert "Traceback" not in str(error)


def compiles(spec: LoopSpec, config: Config) -> str:
    """A validated spec compiles on the test model. Only a `function` tool's or a verifier's
    import, or a verifier plugin that is not installed, may still fail (validation does not
    import user code or load plugins, by design)."""
    try:
        compile_spec(spec, models=TestModel(), config=config)
    except UserInputError as exc:
        assert not isinstance(exc, SpecError), f"compile_spec re-validation disagrees: {exc}"
        refusal = r"cannot import|cannot be imported|not callable|is a \w+, not|not found \(no '"
        assert re.search(refusal, str(exc)), exc
        return "import refused at compile"
    return "compiled"


def run_fuzz(max_examples: int) -> Counter[str]:
    stats: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(root=Path(tmp))

        @settings(
            max_examples=max_examples,
            deadline=DEADLINE,
            derandomize=True,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
                HealthCheck.filter_too_much,
            ],
        )
        @given(documents())
        def check(document: tuple[str, str]) -> None:
            kind, text = document
            result = validate(text)
            stats["examples"] += 1
            if isinstance(result, SpecError):
                # the generators follow the rules: only a mutation makes a spec invalid
                assert kind != "generated", result.lines()
                check_problems(result, text)
                stats[f"invalid {kind}"] += 1
            else:
                stats[compiles(result, config)] += 1
                stats[f"valid {kind}"] += 1

        started = time.perf_counter()
        check()
        stats["seconds"] = round(time.perf_counter() - started)
    valid = sum(n for k, n in stats.items() if k.startswith("valid"))
    invalid = sum(n for k, n in stats.items() if k.startswith("invalid"))
    print(f"\nfuzzed specs: {dict(stats)}; valid {valid}, invalid {invalid}")
    # the generators must reach both sides: specs that validate and compile, and refusals
    # (about a fifth are refusals; the derandomized draw moves with the test's source lines)
    assert stats["examples"] >= max_examples
    assert valid >= max_examples // 6, stats
    assert invalid >= max_examples // 6, stats
    return stats


def test_200_fuzzed_specs_validate_cleanly_and_compile() -> None:
    run_fuzz(200)


@pytest.mark.slow
def test_2000_fuzzed_specs_validate_cleanly_and_compile() -> None:
    run_fuzz(2000)


# -- through the CLI ---------------------------------------------------------------------------


def test_fuzzed_specs_through_loopengt_validate(tmp_path: Path) -> None:
    seen: Counter[int] = Counter()

    @settings(max_examples=20, deadline=None, derandomize=True, database=None)
    @given(documents())
    def check(document: tuple[str, str]) -> None:
        _, text = document
        path = tmp_path / FILENAME
        path.write_text(text, encoding="utf-8")
        proc = run_cli(tmp_path, "validate", FILENAME)
        seen[proc.returncode] += 1
        assert proc.returncode in (0, 2), proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        # the process says what the API says
        expected = validate(text)
        assert (proc.returncode == 0) == isinstance(expected, LoopSpec), proc.stderr
        if isinstance(expected, SpecError):  # one line per problem, as the API has them
            assert [line for line in proc.stderr.split("\n") if line] == expected.lines()

    check()
    print(f"\nloopengt validate on fuzzed specs, exit codes: {dict(seen)}")
    assert seen[0] and seen[2], seen  # both outcomes were exercised
