"""LangGraph Studio and the LangGraph server: `loopengt studio`.

`export_studio(files, out)` writes two files into ``out``: `langgraph.json`, one graph per
spec (named after the spec, with its description), and `loopengt_graphs.py`, one factory per
spec. `langgraph dev` (the local server Studio connects to) or a LangGraph deployment reads
the first and imports the second.

The module builds every graph when it is imported (`cached_graph`), and each factory returns
its graph. On import, because the server imports the module in a worker thread, while it
calls a factory on its event loop on every request: a compile there would hold the loop,
and `langgraph dev` (blockbuster) raises `BlockingError` for the file system calls a
compile makes (the local model's file is looked up with `os.scandir`). The cache is this
module's, keyed by spec file, because the server executes the generated module once per
graph. A spec or model problem therefore stops `langgraph dev` at start-up, with the
reason. The graph is compiled without a checkpointer or store, so the server's own are used
(a module-level graph holding one makes `langgraph dev` refuse to start); models and config
are read as `loopengt run` reads them (`Config.load(project)`).

What Studio shows. The loop's own graph has a dozen internal channels (`messages`, `turns`,
`visits`, ...) and takes its run input as one untyped `input` object, so it is not served
as is. It runs inside a small parent graph:

* the parent's **input schema** is a TypedDict built from `spec.inputs`: one top-level
  field per declared input, with its description, its default and whether it is required
  (typed from the default, `list` for an input a fan-out maps over, else `str`);
* its **output schema** is `outputs`, `status` and `stop_reason`;
* node `loop` maps the fields onto `{"input": {...}}` (defaults filled in as `loopengt run`
  does) and runs the compiled loop (`ainvoke` under the server). A compiled graph called
  inside a node is a LangGraph subgraph: it checkpoints under the node's namespace with the
  server's checkpointer, an approval's `interrupt()` pauses the whole run (Studio offers to
  resume it, and finished steps are not run again), and Studio's graph view shows the
  loop's steps (xray) and streams their updates. Adding the loop graph itself as the node
  would need the parent to carry the loop's channels (the `input` object among them),
  which is what the form must not show;
* node `outcome` raises `LoopNotCompleted` when the loop ended `failed`, `stopped` or
  `rejected` (the runs `loopengt run` exits 1 for), so the server marks the run as an error,
  not a success. It is a node of its own so that the state Studio shows for the thread still
  holds the outputs made so far and the stop reason.

Inside the parent node, reasons never suggest `loopengt resume`
(`providers.errors.RESUME_HINTS`): a Studio user has no such command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopengt import __version__
from loopengt.errors import UserInputError

if TYPE_CHECKING:
    from loopengt.spec.models import LoopSpec

CONFIG_FILE = "langgraph.json"
MODULE_FILE = "loopengt_graphs.py"
MARKER_KEY = "LOOPENGT_STUDIO"
"""In `langgraph.json`'s `env`: marks a file `loopengt studio` wrote (and may overwrite).
An `env` entry, not a key of our own, because the LangGraph CLI warns on unknown keys."""
MARKER_VALUE = "written by `loopengt studio`, which overwrites this file: edit the specs"
MODULE_MARKER = "# Written by `loopengt studio`, which overwrites this file: edit the specs."
LOOP_NODE, OUTCOME_NODE = "loop", "outcome"
OUTPUT_FIELDS = ("outputs", "status", "stop_reason")
RESERVED = frozenset((*OUTPUT_FIELDS, LOOP_NODE, OUTCOME_NODE))
"""Names the parent graph uses itself: a declared input cannot have one."""
NOT_COMPLETED = ("failed", "stopped", "rejected")
EXTRA_HINT = "install the studio extra: uv sync --extra studio (or pip install 'loopengt[studio]')"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 2024


class LoopNotCompleted(RuntimeError):
    """The loop ended failed, stopped or rejected: the server marks the run as an error."""


@dataclass
class StudioExport:
    """What `export_studio` wrote."""

    out: Path
    config_path: Path
    module_path: Path
    graphs: dict[str, str] = field(default_factory=dict)
    """Graph name -> factory name."""


# -- the graph the server runs ----------------------------------------------------------------


def studio_graph(
    spec_path: str | os.PathLike[str],
    *,
    project: str | os.PathLike[str] | None = None,
    check_models: bool = True,
) -> Any:
    """The spec's loop inside a parent graph whose input is the declared inputs and whose
    output is `outputs`, `status` and `stop_reason` (see the module docstring); compiled
    without a checkpointer or store. ``project`` is the folder whose `.loopengt/config.toml`
    gives models and settings (default: `find_project()`)."""
    from langgraph._internal._runnable import RunnableCallable
    from langgraph.graph import END, START, StateGraph

    from loopengt.compile import compile_spec
    from loopengt.config import Config
    from loopengt.providers.errors import RESUME_HINTS
    from loopengt.spec.loader import load_spec

    spec = load_spec(spec_path)
    _check_input_names(spec, str(spec_path))
    config = Config.load(Path(project) if project is not None else None)
    loop = compile_spec(spec, config=config, check_models=check_models)
    input_schema = input_typeddict(spec)
    output_schema = _output_typeddict()
    state = _typeddict(
        "StudioState", {**input_schema.__annotations__, **output_schema.__annotations__}
    )

    def run_loop(values: dict[str, Any]) -> dict[str, Any]:
        hints = RESUME_HINTS.set(False)
        try:
            return _loop_result(loop.invoke({"input": studio_inputs(spec, values)}))
        finally:
            RESUME_HINTS.reset(hints)

    async def arun_loop(values: dict[str, Any]) -> dict[str, Any]:
        hints = RESUME_HINTS.set(False)
        try:
            return _loop_result(await loop.ainvoke({"input": studio_inputs(spec, values)}))
        finally:
            RESUME_HINTS.reset(hints)

    def outcome(values: dict[str, Any]) -> dict[str, Any]:
        status = values.get("status")
        if status in NOT_COMPLETED:
            reason = values.get("stop_reason") or "no reason given"
            raise LoopNotCompleted(reason if reason.startswith(status) else f"{status}: {reason}")
        return {}

    builder: Any = StateGraph(state, input_schema=input_schema, output_schema=output_schema)
    # both APIs, as every loopengt node: the server awaits `ainvoke`, scripts may `invoke`
    builder.add_node(LOOP_NODE, RunnableCallable(run_loop, arun_loop, name=LOOP_NODE))
    builder.add_node(OUTCOME_NODE, outcome)
    builder.add_edge(START, LOOP_NODE)
    builder.add_edge(LOOP_NODE, OUTCOME_NODE)
    builder.add_edge(OUTCOME_NODE, END)
    return builder.compile(name=spec.name)


_CACHE: dict[tuple[str, str, int], Any] = {}


def cached_graph(
    spec_path: str | os.PathLike[str], *, project: str | os.PathLike[str] | None = None
) -> Any:
    """`studio_graph`, built once per process for a spec file (and version of it) and
    project: the server executes the generated module once per graph it names."""
    path = Path(spec_path).resolve()
    root = Path(project).resolve() if project is not None else None
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        version = 0  # load_spec reports the missing file
    key = (str(path), str(root), version)
    graph = _CACHE.get(key)
    if graph is None:
        graph = _CACHE[key] = studio_graph(path, project=root)
    return graph


def _loop_result(final: dict[str, Any]) -> dict[str, Any]:
    return {
        "outputs": dict(final.get("outputs") or {}),
        "status": final.get("status") or "completed",
        "stop_reason": final.get("stop_reason"),
    }


def input_typeddict(spec: LoopSpec) -> Any:
    """A TypedDict with one field per declared input: its description, default and type."""
    from typing import Annotated, NotRequired, Required

    from pydantic import Field

    from loopengt.runs.engine import _mapped_inputs

    mapped = set(_mapped_inputs(spec))
    fields: dict[str, Any] = {}
    for name, declared in spec.inputs.items():
        kind = list[Any] if name in mapped else _type_of(declared.default)
        info: dict[str, Any] = {}
        if declared.description:
            info["description"] = declared.description
        if declared.default is not None:
            info["default"] = declared.default
        typed = Annotated[kind, Field(**info)] if info else kind
        needed = declared.required and declared.default is None
        fields[name] = Required[typed] if needed else NotRequired[typed]
    schema = _typeddict(f"{_identifier(spec.name, 'Loop')}Input", fields, total=True)
    schema.__doc__ = spec.description or spec.goal
    return schema


def _typeddict(name: str, fields: dict[str, Any], *, total: bool = False) -> Any:
    """A TypedDict made at run time (its keys are the spec's input names, any string)."""
    from typing_extensions import TypedDict

    make: Any = TypedDict
    return make(name, fields, total=total)


def _type_of(default: Any) -> Any:
    for kind in (bool, int, float, str):
        if isinstance(default, kind):
            return kind
    if isinstance(default, list):
        return list[Any]
    if isinstance(default, dict):
        return dict[str, Any]
    return str


def _output_typeddict() -> Any:
    from typing import Annotated

    from pydantic import Field

    return _typeddict(
        "LoopOutput",
        {
            "outputs": Annotated[
                dict[str, Any], Field(description="Each step's output, by step name.")
            ],
            "status": Annotated[
                str,
                Field(description="completed, stopped (a policy limit), failed or rejected."),
            ],
            "stop_reason": Annotated[
                str | None, Field(description="Why the loop ended early, if it did.")
            ],
        },
    )


def studio_inputs(spec: LoopSpec, values: dict[str, Any]) -> dict[str, Any]:
    """The loop's run input from the parent state: the declared inputs given (an empty form
    field comes as None), defaults filled in and missing ones refused as `loopengt run`
    does, without its command-line hints."""
    from loopengt.runs.engine import prepare_inputs

    given = {k: v for k, v in values.items() if k in spec.inputs and v is not None}
    try:
        return prepare_inputs(spec, given)
    except UserInputError as exc:
        lines = [re.sub(r": pass --input .*$", "", line) for line in str(exc).splitlines()]
        raise UserInputError("\n".join(lines)) from None


def _check_input_names(spec: LoopSpec, filename: str) -> None:
    clash = sorted(RESERVED & set(spec.inputs))
    if clash:
        names = ", ".join(repr(name) for name in clash)
        raise UserInputError(
            f"{filename}: input {names}: the Studio graph uses that name itself "
            f"({', '.join(sorted(RESERVED))}); rename the input"
        )


# -- export -------------------------------------------------------------------------------------


def export_studio(
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    project: str | os.PathLike[str] | None = None,
    check_models: bool = False,
) -> StudioExport:
    """Write `langgraph.json` and `loopengt_graphs.py` for ``files`` into ``out`` (default:
    the project folder). Every spec is validated and compiled first, its models only with
    ``check_models`` (a deployment may have other keys than this shell); nothing is written
    when one fails, or when either file exists and was not written by loopengt."""
    from loopengt.project import find_project
    from loopengt.spec.loader import validate_files

    project_dir = Path(project).resolve() if project is not None else find_project()
    out_dir = Path(out).resolve() if out is not None else project_dir
    paths = [Path(f) for f in files]
    results = validate_files([str(p) for p in paths])
    problems = [line for result in results for line in result.problems]
    if problems:
        raise _Problems(problems)
    factories: dict[str, str] = {}
    graphs: dict[str, dict[str, str]] = {}
    entries: list[tuple[str, str, str]] = []
    for path, result in zip(paths, results, strict=True):
        spec = result.spec
        assert spec is not None
        if spec.name in graphs:
            raise UserInputError(
                f"{path}: another spec is also named {spec.name!r}; graph names must differ"
            )
        studio_graph(path, project=project_dir, check_models=check_models)
        factory = _factory_name(spec.name, set(factories.values()))
        factories[spec.name] = factory
        description = spec.description or spec.goal
        graphs[spec.name] = {
            "path": f"./{MODULE_FILE}:{factory}",
            "description": description,
        }
        entries.append((factory, spec.name, _relative(path.resolve(), out_dir)))
    config_path, module_path = out_dir / CONFIG_FILE, out_dir / MODULE_FILE
    _refuse_foreign(config_path, module_path)
    document = {
        "dependencies": ["."],
        "graphs": graphs,
        "env": {MARKER_KEY: MARKER_VALUE},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(config_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    _write(module_path, _module_text(entries, _relative(project_dir, out_dir)))
    return StudioExport(out_dir, config_path, module_path, factories)


class _Problems(UserInputError):
    """Spec problems, already one `FILE:LINE:COL: ...` line each."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))

    def messages(self) -> list[str]:
        return list(self.lines)


def _refuse_foreign(config_path: Path, module_path: Path) -> None:
    from loopengt.project import shown_path

    if config_path.exists() and not _is_ours_json(config_path):
        raise UserInputError(
            f"{shown_path(config_path)} was not written by loopengt studio; "
            "leaving it alone (move it, or pass --out DIR)"
        )
    if module_path.exists() and not _is_ours_module(module_path):
        raise UserInputError(
            f"{shown_path(module_path)} was not written by loopengt studio; "
            "leaving it alone (move it, or pass --out DIR)"
        )


def _is_ours_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    env = data.get("env") if isinstance(data, dict) else None
    return isinstance(env, dict) and MARKER_KEY in env


def _is_ours_module(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().rstrip("\n") == MODULE_MARKER
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _relative(path: Path, base: Path) -> str:
    """``path`` as the generated files name it: relative to ``base`` (posix), else absolute."""
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def _identifier(name: str, fallback: str) -> str:
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    camel = "".join(w[:1].upper() + w[1:] for w in words)
    return camel if camel and not camel[0].isdigit() else fallback + camel


def _factory_name(spec_name: str, taken: set[str]) -> str:
    slug = re.sub(r"\W+", "_", spec_name.lower(), flags=re.ASCII).strip("_") or "loop"
    name = f"make_{slug}"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    return unique


_MODULE_HEAD = '''{marker}
"""LangGraph server entry points for loopengt specs, named in langgraph.json.

Every graph is built here, on import (`loopengt.studio.cached_graph`: once per process),
which the server does off its event loop; the factories it calls on every request only
look them up. Paths are relative to this file; models and settings come from the
project's .loopengt/config.toml. Written by loopengt {version}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopengt.studio import cached_graph

HERE = Path(__file__).resolve().parent
PROJECT = HERE / {project}
SPECS = {{{specs}
}}
GRAPHS = {{name: cached_graph(HERE / s, project=PROJECT) for name, s in SPECS.items()}}
'''

_FACTORY = '''

def {factory}() -> Any:
    """The {name} loop ({spec})."""
    return GRAPHS[{name_literal}]
'''


def _module_text(entries: list[tuple[str, str, str]], project: str) -> str:
    specs = "".join(f"\n    {_literal(name)}: {_literal(spec)}," for _, name, spec in entries)
    text = _MODULE_HEAD.format(
        marker=MODULE_MARKER, version=__version__, project=_literal(project), specs=specs
    )
    for factory, name, spec in entries:
        text += _FACTORY.format(
            factory=factory, name=_doc(name), spec=_doc(spec), name_literal=_literal(name)
        )
    return text


def _doc(text: str) -> str:
    """``text`` safe inside a docstring."""
    return " ".join(text.replace("\\", "/").replace('"', "'").split())


def _literal(text: str) -> str:
    """A Python string literal for ``text`` (a JSON string is one)."""
    return json.dumps(text, ensure_ascii=False)


# -- serve --------------------------------------------------------------------------------------


def missing_studio_extra() -> str | None:
    """The module of the studio extra that is not installed (`langgraph dev` needs both)."""
    import importlib.util

    for module in ("langgraph_cli", "langgraph_api"):
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return module
    return None


def check_studio_extra() -> None:
    """A `UserInputError` naming the extra to install when `langgraph dev` is missing."""
    missing = missing_studio_extra()
    if missing is not None:
        raise UserInputError(f"--serve needs {missing.replace('_', '-')}: {EXTRA_HINT}")


def serve_command(
    config_path: Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> list[str]:
    """`langgraph dev` for ``config_path``, run by this interpreter (where loopengt is)."""
    return [
        sys.executable,
        "-m",
        "langgraph_cli",
        "dev",
        "--no-browser",
        "--host",
        host,
        "--port",
        str(port),
        "--config",
        str(config_path),
    ]


def serve_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: no LangSmith tracing, no CLI analytics."""
    env = dict(os.environ if base is None else base)
    env["LANGSMITH_TRACING"] = "false"
    env["LANGGRAPH_CLI_NO_ANALYTICS"] = "1"
    return env


def start_server(
    config_path: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    env: dict[str, str] | None = None,
    new_session: bool = True,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """Start `langgraph dev` in the folder of ``config_path`` (it resolves the graphs'
    paths and `dependencies` from its working directory); ``new_session``: in a process
    group of its own, out of reach of the terminal's Ctrl-C."""
    check_studio_extra()
    return subprocess.Popen(
        serve_command(config_path, host=host, port=port),
        cwd=config_path.parent,
        env=serve_env(env),
        start_new_session=new_session,
        **popen,
    )


def studio_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"https://smith.langchain.com/studio/?baseUrl=http://{host}:{port}"


def stop_server(process: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """Stop the server and its reloader: SIGTERM (to its process group when it leads one),
    then SIGKILL after ``timeout`` seconds."""
    import signal

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, sig)
            else:
                os.kill(process.pid, sig)

    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout)
    return process.returncode if process.returncode is not None else 0
