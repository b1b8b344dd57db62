"""Hostile input: refused with one clear line (exit 2, no traceback) or handled safely.

Each test would fail if its protection were removed: a YAML tag that runs code leaves a
marker file, a bomb or a deep document takes longer than its bound, a template that reaches
Python internals shows them in the prompt the model receives, a path out of the project
returns the file's content, a run id out of `.loopengt/runs` reads or writes a file there.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from loopengt.compile import compile_spec
from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.providers.testing import ScriptedModel
from loopengt.runs.engine import prepare_inputs
from loopengt.spec import SpecError, load_spec_text
from loopengt.spec.yaml_source import MAX_DEPTH, MAX_NODES
from loopengt.templating import render
from tests.support.cli import run_cli

FAST_SECONDS = 10  # a refusal is immediate; a bomb that got through would take minutes

SPEC = """\
name: brief
goal: Write a brief.
inputs:
  topic: {description: What the brief is about.}
agents:
  - name: writer
steps:
  - name: draft
    prompt: "Write about {{input.topic}}."
"""


# -- helpers -----------------------------------------------------------------------------------


def problem_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_refused(proc: subprocess.CompletedProcess[str], *needles: str, lines: int = 1) -> str:
    """Exit 2, no traceback, ``lines`` line(s) on stderr holding every needle; the text."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    shown = problem_lines(proc)
    assert len(shown) == lines, shown
    text = "\n".join(shown)
    for needle in needles:
        assert needle in text, text
    return text


def refused(text: str, *needles: str) -> SpecError:
    """The in-process validation of ``text`` raises SpecError, quickly, naming the needles."""
    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_spec_text(text, filename="hostile.yaml")
    assert time.perf_counter() - started < FAST_SECONDS
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return info.value


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (symlinks not followed) -> (size, mtime_ns)."""
    found = {}
    for path in root.rglob("*"):
        stat = path.lstat()
        found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder inside a sandbox; ``tmp_path/outside`` is beyond the project."""
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "brief.yaml").write_text(SPEC, encoding="utf-8")
    return root


# -- YAML that would run code ------------------------------------------------------------------

PYTHON_TAGS = [
    'name: !!python/object/apply:os.system ["touch {marker}"]',
    'name: !!python/object/new:os.system ["touch {marker}"]',
    "name: !!python/object:subprocess.Popen {{args: [touch, {marker}]}}",
    "name: !!python/name:os.system",
    "name: !!python/module:os",
    'name: !<tag:yaml.org,2002:python/object/apply:os.system> ["touch {marker}"]',
    '%TAG !p! tag:yaml.org,2002:python/\n---\nname: !p!object/apply:os.system ["touch {marker}"]',
    '? !!python/object/apply:os.system ["touch {marker}"]\n: key',
    'base: &b {{x: !!python/object/apply:os.system ["touch {marker}"]}}\nname: {{<<: *b}}',
]


@pytest.mark.parametrize("payload", PYTHON_TAGS)
def test_python_tags_are_refused_and_never_run(project: Path, payload: str) -> None:
    marker = project.parent / "outside" / "PWNED"
    text = payload.format(marker=marker) + "\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s}]\n"
    error = refused(text, "unsupported YAML tag", "python/")
    assert len(error.lines()) == 1
    (project / "evil.yaml").write_text(text, encoding="utf-8")
    assert_refused(run_cli(project, "validate", "evil.yaml"), "evil.yaml:", "python/")
    before = tree(project)
    assert_refused(run_cli(project, "run", "evil.yaml", "--model", "test"), "python/")
    assert tree(project) == before  # refused before anything was created
    assert not marker.exists()


# -- documents that expand, nest or weigh too much ---------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
name: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def merge_bomb() -> str:
    """One mapping of 5,000 keys merged 50,000 times: each merge is a pass over its keys
    (250 million in all), though the result has only 5,000."""
    keys = ", ".join(f"k{i}: x" for i in range(5_000))
    return f"base: &a {{{keys}}}\nname: {{<<: [{', '.join(['*a'] * 50_000)}]}}\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (BILLION_LAUGHS, f"more than {MAX_NODES:,} values"),
        (merge_bomb(), f"more than {MAX_NODES:,} values"),
        ("name: &a [*a]\n", f"nesting deeper than {MAX_DEPTH} levels"),
        ("name: &a {x: *a}\n", f"nesting deeper than {MAX_DEPTH} levels"),
        ("name: &a {<<: *a}\n", "'<<' merge includes the mapping it is in"),
    ],
    ids=["billion-laughs", "merge-bomb", "self-list", "self-map", "self-merge"],
)
def test_alias_bombs_are_refused_quickly(project: Path, text: str, needle: str) -> None:
    refused(text, needle)
    (project / "bomb.yaml").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    assert_refused(run_cli(project, "validate", "bomb.yaml"), "bomb.yaml:", needle)
    assert time.perf_counter() - started < FAST_SECONDS


def test_merge_keys_work_as_yaml_says() -> None:
    """Merges are resolved by the bounded loader itself, not refused: own keys win, then the
    first merged mapping (a spec with shared agent settings must load)."""
    spec = load_spec_text(
        textwrap.dedent(
            """\
            name: merges
            goal: g
            metadata:
              base: &base {model: test, temperature: 1, description: base}
              warm: &warm {temperature: 2, description: warm, max_tokens: 50}
            agents:
              - {<<: *base, name: a, temperature: 0.5}
              - {<<: [*base, *warm], name: b}
              - <<: *warm
                name: c
            steps: [{name: s, agent: a}]
            """
        )
    )
    got = [(a.name, a.model, a.temperature, a.description, a.max_tokens) for a in spec.agents]
    assert got == [
        ("a", "test", 0.5, "base", None),
        ("b", "test", 1.0, "base", 50),
        ("c", None, 2.0, "warm", 50),
    ]
    refused("name: n\nagents: [{name: a, name: b}]\n", "duplicate key 'name'")


def test_a_50_mb_spec_is_refused_quickly(project: Path) -> None:
    """The file's size is checked before it is read, and the text's before it is parsed
    (a caller of the API may hand over the text itself)."""
    path = project / "huge.yaml"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(SPEC)
        fh.write(("# padding\n" * 100_000) * 53)  # ~50 MB
    assert path.stat().st_size > 50_000_000
    started = time.perf_counter()
    text = assert_refused(run_cli(project, "validate", "huge.yaml"), "huge.yaml:1:1: ", "1 MB")
    assert "larger than" in text
    assert_refused(run_cli(project, "run", "huge.yaml", "--model", "test", "-i", "topic=x"))
    assert time.perf_counter() - started < 2 * FAST_SECONDS
    refused(SPEC + "#" * 50_000_000, "larger than 1 MB")  # the API given the text itself


def test_special_files_are_refused_without_blocking(project: Path) -> None:
    fifo = project / "pipe.yaml"
    os.mkfifo(fifo)  # opening it to read would block until a writer comes
    assert_refused(run_cli(project, "validate", "pipe.yaml"), "pipe.yaml:1:1: not a file")
    assert_refused(run_cli(project, "validate", "/dev/zero"), "/dev/zero:1:1: not a file")
    assert_refused(run_cli(project, "validate", "."), "not a file")


DEEP = 10_000


@pytest.mark.parametrize(
    "value",
    [
        "[" * DEEP + "]" * DEEP,
        "{a: " * DEEP + "x" + "}" * DEEP,
        "\n" + "- " * DEEP + "x",  # block sequences, all on one line
        "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5),  # parses, but deeper than allowed
    ],
    ids=["flow-lists", "flow-maps", "block-lists", "just-over-the-limit"],
)
def test_deep_nesting_is_refused(project: Path, value: str) -> None:
    text = "name: deep\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s}]\nmetadata: " + value
    refused(text, f"nesting deeper than {MAX_DEPTH} levels")
    (project / "deep.yaml").write_text(text, encoding="utf-8")
    assert_refused(run_cli(project, "validate", "deep.yaml"), "deep.yaml:", "nesting deeper")


# -- bytes and scalars that are not what they seem ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (SPEC.replace("Write a brief.", "Caf\xe9").encode("latin-1"), "2:1"),
        (SPEC.encode("utf-16"), "1:1"),
        (SPEC.encode() + b"metadata: {x: \xff}\n", "10:1"),
        (SPEC.encode() + b"metadata: {x: \xc0\xaf}\n", "10:1"),  # overlong '/'
        (SPEC.encode() + b"metadata: {x: \xed\xa0\x80}\n", "10:1"),  # an encoded surrogate
    ],
    ids=["latin-1", "utf-16", "stray-byte", "overlong", "cesu-surrogate"],
)
def test_non_utf8_bytes_are_refused_with_their_line(project: Path, data: bytes, where: str) -> None:
    (project / "bytes.yaml").write_bytes(data)
    assert_refused(run_cli(project, "validate", "bytes.yaml"), f"bytes.yaml:{where}: not UTF-8")


def test_a_utf8_bom_is_fine_and_a_nul_is_refused(project: Path) -> None:
    (project / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + SPEC.encode())
    assert run_cli(project, "validate", "bom.yaml").returncode == 0
    (project / "nul.yaml").write_bytes(SPEC.encode().replace(b"brief.", b"br\x00ief."))
    assert_refused(run_cli(project, "validate", "nul.yaml"), "nul.yaml:2:", "#x0000")


@pytest.mark.parametrize(
    ("scalar", "needle"),
    [
        ("2024-13-01", "invalid timestamp '2024-13-01': month must be in 1..12"),
        ("!!bool maybe", "invalid bool 'maybe'"),
        ("!!timestamp soon", "invalid timestamp 'soon'"),
        ("9" * 5000, "invalid int"),
        ('"\\ud83d"', "\\ud83d is half of a surrogate pair"),
        ('"\\U00111111"', "the escape \\U00111111 is beyond U+10FFFF"),  # found by the fuzzer
    ],
)
def test_scalars_that_cannot_be_built_are_one_problem(
    project: Path, scalar: str, needle: str
) -> None:
    """PyYAML raises ValueError, KeyError or AttributeError for these; they once escaped
    validation as a crash (exit 1, "error: ValueError: ...")."""
    text = SPEC + f"metadata: {{when: {scalar}}}\n"
    refused(text, needle)
    (project / "scalar.yaml").write_text(text, encoding="utf-8")
    assert_refused(run_cli(project, "validate", "scalar.yaml"), "scalar.yaml:10:", needle)


def test_json_escapes_outside_the_bmp_are_joined() -> None:
    """json.dumps writes 😀 as a surrogate pair of escapes; a JSON spec must load as JSON
    does (PyYAML alone gives two lone surrogates, which nothing can encode)."""
    doc = {"name": "smile 😀", "goal": "g", "agents": [{"name": "a"}], "steps": [{"name": "s"}]}
    text = json.dumps(doc)
    assert "\\ud83d\\ude00" in text
    assert load_spec_text(text).name == "smile 😀"


@pytest.mark.parametrize("key", ["on", "yes", "1", "1.5", "~", "null"])
def test_keys_that_yaml_reads_as_other_types_are_named(key: str) -> None:
    refused(SPEC + f"metadata: {{{key}: x}}\n", f"key '{key}' is read as", f"quote it: '{key}'")


# -- prompt templates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placeholder", "needle"),
    [
        ("{{input.__class__}}", "unknown input '__class__'"),
        ("{{input.__class__.__mro__}}", "unknown input '__class__'"),
        ("{{__class__}}", "unknown placeholder {{__class__}}"),
        ("{{goal.__class__}}", "unknown placeholder {{goal.__class__}}"),
        ("{{__import__('os').system('true')}}", "unknown placeholder"),
    ],
)
def test_templates_naming_python_internals_are_refused(
    project: Path, placeholder: str, needle: str
) -> None:
    text = SPEC.replace("{{input.topic}}", placeholder)
    refused(text, needle)
    (project / "tpl.yaml").write_text(text, encoding="utf-8")
    assert_refused(run_cli(project, "validate", "tpl.yaml"), "tpl.yaml:9:", needle)


TRICKS = (
    "A {{input.topic.__class__}}|B {{input.topic.__class__.__mro__}}|"
    "C {{steps.first.__class__.__init__.__globals__}}|D {{input.topic.__len__}}|"
    "E {{first.__dict__}}|F {{input.topic.0}}|G {0.__class__}|H {input.__class__}|"
    "I %(topic)s|J ${HOME}|K {{goal}}"
)


def test_templates_never_render_python_internals() -> None:
    """Placeholders that pass validation (they name a real input or step) and then try
    attribute access render as empty text; single braces, %-format and shell syntax stay as
    written; input values are not rendered again (no template injection)."""
    spec = load_spec_text(
        textwrap.dedent(
            f"""\
            name: tricks
            goal: The goal.
            inputs:
              topic: {{description: anything}}
            agents: [{{name: a}}]
            steps:
              - {{name: first, prompt: "{{{{input.topic}}}}"}}
              - name: second
                depends_on: [first]
                prompt: "{TRICKS}"
            """
        )
    )
    model = ScriptedModel(fallback="ok")
    hostile = "{{goal}} {{input.topic}} {0.__class__} {{steps.first}}"
    compile_spec(spec, models=model).invoke({"input": {"topic": hostile}})
    first, second = model.prompts()
    assert first == hostile  # an input value is text, not a template
    expected = (
        "A |B |C |D |E |F |G {0.__class__}|H {input.__class__}|I %(topic)s|J ${HOME}|K The goal."
    )
    assert second == expected
    for leak in ("<class", "mro", "built-in", "<function", "object at 0x"):
        assert leak not in first + second


def test_render_reads_mappings_and_lists_only() -> None:
    """Inputs and outputs may hold objects (a Python caller's input); a field path reads
    dict keys and list indexes, never attributes."""
    secret = SimpleNamespace(token="s3cret", items=["x"])
    inputs: dict[str, Any] = {"obj": secret, "data": {"items": ["a", "b"]}}
    text = render(
        "{{input.obj.token}}|{{input.obj.items.0}}|{{input.data.items.1}}|"
        "{{input.data.__class__}}|{{input.data.items.__len__}}|{{steps.s.keys}}",
        goal="g",
        inputs=inputs,
        outputs={"s": {"a": 1}},
    )
    assert text == "||b|||"


# -- function tools ----------------------------------------------------------------------------

FUNCTION_SPEC = """\
name: tools
goal: g
tools:
  - {{name: run, kind: function, function: "{function}"}}
agents: [{{name: a, tools: [run]}}]
steps: [{{name: s}}]
"""


def test_validation_never_imports_a_function_tool(project: Path) -> None:
    """`loopengt validate` reads a spec someone sent you without running its code: the
    module a function tool names is imported only when the spec is compiled to run."""
    marker = project.parent / "outside" / "IMPORTED"
    (project / "evil_tool.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\ndef run() -> str:\n"
        "    return 'x'\n",
        encoding="utf-8",
    )
    (project / "tools.yaml").write_text(FUNCTION_SPEC.format(function="evil_tool:run"))
    proc = run_cli(project, "validate", "tools.yaml")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    # the check is not vacuous: the same spec does import it when it is run
    run_cli(project, "run", "tools.yaml", "--model", "test", pythonpath=project)
    assert marker.exists()


@pytest.mark.parametrize(
    "function",
    [":system", ".os:system", "os", "os:", "os:system()", "os;rm:x", "../evil:run", "a b:c"],
)
def test_function_paths_that_cannot_be_imports_are_refused(project: Path, function: str) -> None:
    """Before: '.os:system' and ':system' passed validation and crashed the compile with
    TypeError / ValueError (exit 1); now validation refuses every malformed path."""
    text = FUNCTION_SPEC.format(function=function)
    refused(text, "function must be 'module:attr'")
    (project / "tools.yaml").write_text(text, encoding="utf-8")
    assert_refused(run_cli(project, "validate", "tools.yaml"), "tools.yaml:4:", "module:attr")
    assert_refused(run_cli(project, "run", "tools.yaml", "--model", "test"), "module:attr")


@pytest.mark.parametrize("verifier", [":x", ".gates:check", "a b:c"])
def test_verifier_paths_that_cannot_be_imports_are_refused(verifier: str) -> None:
    gate = f'gate: {{kind: verifier, verifier: "{verifier}"}}'
    refused(SPEC + f"    {gate}\n", "verifier must be a plugin name or 'module:attr'")
    custom = textwrap.dedent(
        f"""\
        name: c
        goal: g
        pattern: custom
        agents: [{{name: a}}]
        steps: [{{name: s}}, {{name: t}}]
        graph:
          entry: s
          edges: [{{from: s, branches: [{{when: {{verifier: "{verifier}"}}, to: t}}]}}]
        """
    )
    refused(custom, "verifier must be a plugin name or 'module:attr'")


# -- file tools --------------------------------------------------------------------------------

READER = """\
name: reader
goal: Read files.
tools:
  - {name: read_file, kind: builtin}
  - {name: list_dir, kind: builtin}
agents: [{name: reader, tools: [read_file, list_dir], max_tool_calls: 2}]
steps: [{name: read, prompt: Read the files.}]
"""


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[Path]:
    """A project with a file inside, a secret next to it, and links that lead out."""
    root = tmp_path / "project"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "inside.txt").write_text("inside text")
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "up").symlink_to(tmp_path, target_is_directory=True)
    (root / "notes" / "hop").symlink_to(root / "leak.txt")  # a chain: hop -> leak -> out
    (root / "loop").symlink_to(root / "loop")
    yield root


HOSTILE_PATHS = [
    "../secret.txt",
    "../../etc/passwd",
    "/etc/passwd",
    "notes/../../secret.txt",
    "leak.txt",
    "up/secret.txt",
    "notes/hop",
    "loop",
    "~/secret.txt",
    "%2e%2e/secret.txt",
    "..\\secret.txt",
    "notes/in\x00side.txt",
]


def tool_results(messages: list[BaseMessage]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}


def test_file_tools_refuse_paths_out_of_the_project_in_a_run(jail: Path) -> None:
    """A model asks read_file and list_dir for paths out of the project: each call gets an
    error back, none gets the secret; a path inside still reads (the tools work)."""
    calls = [
        {"name": "read_file", "args": {"path": p}, "id": f"r{i}"}
        for i, p in enumerate(HOSTILE_PATHS)
    ]
    calls += [
        {"name": "list_dir", "args": {"path": p}, "id": f"l{i}"}
        for i, p in enumerate(["..", "up", "/", "/etc", "notes/../.."])
    ]
    calls.append({"name": "read_file", "args": {"path": "notes/inside.txt"}, "id": "ok"})
    model = ScriptedModel(replies=[AIMessage("", tool_calls=calls), "done"])
    graph = compile_spec(load_spec_text(READER), models=model, config=Config(root=jail))
    state = graph.invoke({"input": {}})
    assert state["status"] == "completed"
    results = tool_results(model.requests[1])
    assert set(results) == {c["id"] for c in calls}
    assert results.pop("ok").content == "inside text"
    for call_id, message in results.items():
        assert message.status == "error", (call_id, message.content)
        assert "TOP-SECRET" not in str(message.content)
        assert "root:" not in str(message.content)  # /etc/passwd's first line
        assert "secret.txt\n" not in str(message.content)  # a listing of the sandbox


# -- run ids -----------------------------------------------------------------------------------

HOSTILE_IDS = ["../bait", "../../outside/bait", "a/../../bait", "..", "/tmp/bait", "r1/../r1"]


@pytest.fixture(scope="module")
def with_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after one completed run `r1`, with a trace-shaped bait file in
    `.loopengt/` (outside `runs/`) and one outside the project (the tests only read)."""
    project = tmp_path_factory.mktemp("sandbox") / "project"
    project.mkdir()
    (project.parent / "outside").mkdir()
    (project / "brief.yaml").write_text(SPEC, encoding="utf-8")
    proc = run_cli(
        project, "run", "brief.yaml", "--model", "test", "-i", "topic=owls", "--run-id", "r1"
    )
    assert proc.returncode == 0, proc.stderr
    trace = (project / ".loopengt" / "runs" / "r1.json").read_text(encoding="utf-8")
    bait = trace.replace("owls", "BAIT-CONTENT")
    (project / ".loopengt" / "bait.json").write_text(bait, encoding="utf-8")
    (project.parent / "outside" / "bait.json").write_text(bait, encoding="utf-8")
    return project


@pytest.mark.parametrize(
    "command", [["resume"], ["runs", "show"], ["approve"], ["reject"], ["eval"]]
)
def test_run_ids_out_of_the_runs_folder_are_refused(with_run: Path, command: list[str]) -> None:
    sandbox = with_run.parent
    for run_id in HOSTILE_IDS:
        before = {k: v for k, v in tree(sandbox).items() if ".loopengt" not in k}
        proc = run_cli(with_run, *command, run_id)
        assert_refused(proc, repr(run_id))
        assert "BAIT-CONTENT" not in proc.stdout + proc.stderr
        after = {k: v for k, v in tree(sandbox).items() if ".loopengt" not in k}
        assert after == before, f"{command} {run_id!r} created or changed files"


def test_a_new_run_id_out_of_the_runs_folder_is_refused(project: Path) -> None:
    for run_id in ["../x", "../../outside/x", "/tmp/x", "a/b", ".hidden", "x" * 200]:
        before = tree(project.parent)
        proc = run_cli(
            project, "run", "brief.yaml", "--model", "test", "-i", "topic=t", "--run-id", run_id
        )
        assert_refused(proc, f"run id {run_id!r}", "letters, digits")
        assert tree(project.parent) == before


def test_trace_refuses_run_ids_out_of_the_runs_folder(with_run: Path) -> None:
    outside = with_run.parent / "outside" / "bait"
    for run_id in ["../bait", "../../../outside/bait", str(outside)]:
        proc = run_cli(with_run, "trace", run_id)
        assert "BAIT-CONTENT" not in proc.stdout + proc.stderr, f"trace {run_id!r} read the bait"
        assert_refused(proc, repr(run_id))


def test_trace_of_a_run_id_that_names_nothing_is_one_line(with_run: Path) -> None:
    for run_id in ["../nothing", "a/../../nothing", ".."]:
        assert_refused(run_cli(with_run, "trace", run_id), repr(run_id))


# -- run inputs --------------------------------------------------------------------------------


def test_inputs_the_spec_does_not_declare_are_refused(project: Path) -> None:
    proc = run_cli(project, "run", "brief.yaml", "--model", "test", "-i", "topic=t", "-i", "nope=1")
    assert_refused(proc, "unknown input 'nope'; the spec declares: topic")
    two = run_cli(project, "run", "brief.yaml", "--model", "test", "-i", "__class__=x", "-i", "x=1")
    assert_refused(two, "'__class__'", "'x'", "missing input 'topic'", lines=3)
    assert not (project / ".loopengt").exists()  # refused before a run or database exists
    spec = load_spec_text(SPEC)
    with pytest.raises(UserInputError, match="unknown input 'nope'"):
        prepare_inputs(spec, {"topic": "t", "nope": 1})
    assert prepare_inputs(spec, {"topic": "t"}) == {"topic": "t"}


def test_a_spec_without_inputs_takes_any(project: Path) -> None:
    """Documented: only a spec that declares `inputs` limits them (the run input is then
    shown to agents as given)."""
    (project / "open.yaml").write_text(
        "name: open\ngoal: g\nagents: [{name: a}]\nsteps: [{name: s}]\n", encoding="utf-8"
    )
    proc = run_cli(project, "run", "open.yaml", "--model", "test", "-i", "anything=1")
    assert proc.returncode == 0, proc.stderr


def test_input_files_are_loaded_as_safely_as_specs(project: Path) -> None:
    (project / "date.yaml").write_text("topic: 2024-13-01\n", encoding="utf-8")
    proc = run_cli(project, "run", "brief.yaml", "--model", "test", "--input-file", "date.yaml")
    assert_refused(proc, "date.yaml")
    (project / "broken.yaml").write_text("topic: [\n", encoding="utf-8")
    proc = run_cli(project, "run", "brief.yaml", "--model", "test", "--input-file", "broken.yaml")
    assert_refused(proc, "broken.yaml")
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
               for p, n in zip("abcdefgh", "bcdefghi", strict=True)]  # fmt: skip
    (project / "bomb.yaml").write_text("\n".join([*laughs, "topic: *i", ""]), encoding="utf-8")
    proc = run_cli(project, "run", "brief.yaml", "--model", "test", "--input-file", "bomb.yaml")
    assert_refused(proc, "bomb.yaml")
