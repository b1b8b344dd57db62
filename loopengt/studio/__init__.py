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

from loopengt.studio.export import CONFIG_FILE, MODULE_FILE, StudioExport, export_studio
from loopengt.studio.graph import LoopNotCompleted, cached_graph, input_typeddict, studio_graph
from loopengt.studio.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXTRA_HINT,
    check_studio_extra,
    missing_studio_extra,
    serve_command,
    serve_env,
    start_server,
    stop_server,
    studio_url,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EXTRA_HINT",
    "MODULE_FILE",
    "LoopNotCompleted",
    "StudioExport",
    "cached_graph",
    "check_studio_extra",
    "export_studio",
    "input_typeddict",
    "missing_studio_extra",
    "serve_command",
    "serve_env",
    "start_server",
    "stop_server",
    "studio_graph",
    "studio_url",
]
