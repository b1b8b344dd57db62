"""`loopengt mcp serve`: loopengt's tools for IDEs and agents, over the MCP SDK's FastMCP.

Every tool is a thin call into the Python API the CLI uses (design, validation, the async run
engine, evals, templates); errors of our own become tool errors (``isError``) with the same
one-line message the CLI prints, so a bad argument never takes the server down. Runs are
started in the background on the server's event loop and answered by run id at once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError

from loopengt.errors import LoopengtError
from loopengt.mcp_server.plugin_tools import add_plugin_tools
from loopengt.mcp_server.results import (
    Designed,
    Problem,
    RunInfo,
    RunList,
    RunRow,
    Started,
    TemplateList,
    TemplateRow,
    TraceText,
    Validation,
)
from loopengt.mcp_server.runs import ServerRuns, confine
from loopengt.runs.engine import check_run_id
from loopengt.spec import SpecError
from loopengt.spec.errors import format_path
from loopengt.status import RunStatus

INSTRUCTIONS = (
    "loopengt designs, validates, runs, traces and scores agent loops described in YAML "
    "LoopSpecs (compiled onto LangGraph). Start with list_templates or design_loop, check a "
    "spec with validate_loop, start it with run_loop (returns a run id at once) and poll "
    "get_run; get_trace shows what happened, eval_run scores it."
)


def _problems(exc: SpecError) -> list[Problem]:
    return [
        Problem(
            line=p.line,
            column=p.column,
            path=format_path(p.path),
            message=p.message,
            text=p.format(exc.filename),
        )
        for p in exc.problems
    ]


def _fail(exc: Exception) -> ToolError:
    """The CLI's lines for ``exc``, as a tool error (the client sees ``isError``)."""
    lines = exc.messages() if isinstance(exc, LoopengtError) else [str(exc)]
    text = "\n".join(line.removeprefix("error: ") for line in lines)
    return ToolError(text or type(exc).__name__)


class _Server(FastMCP):
    """FastMCP whose tool errors are the CLI's lines: arguments that fail validation come
    back as one line per problem, and without FastMCP's "Error executing tool" prefix."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            raise ToolError(_tool_error(name, exc)) from None


def _tool_error(name: str, exc: ToolError) -> str:
    from pydantic import ValidationError

    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return "\n".join(
            f"{name}: {'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in cause.errors(include_url=False)
        )
    return str(exc).removeprefix(f"Error executing tool {name}: ")


def build_server(root: Path, *, host: str = "127.0.0.1", port: int = 8000) -> FastMCP:
    """The server for the project at ``root``; every path is confined to it."""
    runs = ServerRuns(root)
    mcp = _Server("loopengt", instructions=INSTRUCTIONS, host=host, port=port)
    mcp.runs = runs  # type: ignore[attr-defined]  # for serve(): runs outlive the client

    @mcp.tool()
    async def design_loop(
        goal: str, pattern: str | None = None, model: str | None = None, attempts: int = 3
    ) -> Designed:
        """Design a loop for a goal: a model writes a LoopSpec, loopengt validates it and has
        the model repair it; when it cannot, the closest built-in template is used (and
        'fallback' says why). Returns the spec YAML and a design document; writes nothing."""
        from loopengt.design import adesign

        try:
            result = await adesign(
                goal, pattern=pattern, model=model, attempts=attempts, root=runs.root
            )
        except LoopengtError as exc:
            raise _fail(exc) from None
        return Designed(
            spec_yaml=result.yaml,
            design_doc=result.doc,
            pattern=result.spec.pattern,
            fallback=result.fallback,
            template=result.template,
            attempts=result.attempts,
        )

    @mcp.tool()
    def validate_loop(spec_yaml: str | None = None, path: str | None = None) -> Validation:
        """Validate a LoopSpec, given as YAML text or as a path in the project. Returns every
        problem with its line, column and field path (ok=false), or the spec's name."""
        from loopengt.spec import load_spec_text
        from loopengt.spec.loader import spec_warnings

        try:
            text, name = runs.spec_source(spec_yaml, path)
            spec = load_spec_text(text, filename=name)
        except SpecError as exc:
            return Validation(ok=False, problems=_problems(exc))
        except LoopengtError as exc:
            raise _fail(exc) from None
        warnings = spec_warnings(text, filename=name)
        return Validation(ok=True, name=spec.name, pattern=spec.pattern, warnings=warnings)

    @mcp.tool()
    async def run_loop(
        ctx: Context[Any, Any, Any],
        spec_yaml: str | None = None,
        path: str | None = None,
        inputs: dict[str, Any] | None = None,
        model: str | None = None,
        replay: str | None = None,
        run_id: str | None = None,
        wait: bool = False,
    ) -> Started:
        """Start a run of a LoopSpec (YAML text or a path in the project) in the background
        and return its run id at once; poll get_run. 'model' overrides every agent's model
        ('test' is the deterministic test model); 'replay' answers model calls from a
        cassette in the project. wait=true returns when the run ends, with progress."""
        from loopengt.runs.engine import RunOptions, astart_run, new_run_id, prepare_inputs

        try:
            file, spec = runs.spec_file(spec_yaml, path)
            run_input = prepare_inputs(spec, inputs or {})
            run_id = check_run_id(run_id) if run_id is not None else new_run_id(spec)
            cassette = str(confine(runs.root, replay, "replay")) if replay else None
            if model is not None:
                from loopengt.providers.registry import resolve_model

                resolve_model(model, config=runs.config)  # an unknown model fails here
            if await _exists(runs, run_id):
                raise LoopengtError(f"run {run_id!r} already exists; resume it or pick another")
        except LoopengtError as exc:
            raise _fail(exc) from None
        options = RunOptions(model=model, replay=cassette)
        sink = _progress(ctx, len(spec.steps)) if wait else None
        task = runs.start(
            run_id,
            lambda: astart_run(
                file,
                inputs=run_input,
                run_id=run_id,
                options=options,
                config=runs.config,
                on_event=sink,
            ),
        )
        if wait:
            await task
            return Started(run_id=run_id, status=(await runs.info(run_id))["status"])
        return Started(run_id=run_id, status="running")

    @mcp.tool()
    async def get_run(run_id: str) -> RunInfo:
        """A run's status, current step, outputs so far, stop reason, steps completed, turns
        and error; 'pending_approval' when it waits for approve_run."""
        try:
            return RunInfo(**await runs.info(check_run_id(run_id)))
        except LoopengtError as exc:
            raise _fail(exc) from None

    @mcp.tool()
    async def list_runs(status: str | None = None, limit: int = 20) -> RunList:
        """The project's runs, newest first (optionally only those with this status)."""
        from loopengt.runs.engine import list_runs as all_runs

        records = await asyncio.to_thread(all_runs, status=status, config=runs.config)
        rows = [
            RunRow(
                run_id=r.run_id,
                spec=r.spec_name,
                status=r.status,
                steps=r.steps_done,
                tokens=r.tokens,
                cost_usd=r.cost_usd,
                score=r.score,
                started_at=r.started_at,
            )
            for r in records[: max(0, limit)]
        ]
        return RunList(runs=rows)

    @mcp.tool()
    def get_trace(
        run_id: str, format: Literal["markdown", "json", "jsonl"] = "markdown"
    ) -> TraceText:
        """A run's trace: every step, model call, tool call, gate and retry with timings,
        tokens and cost, as Markdown, JSON or JSON lines."""
        from loopengt.runs.shared_trace import run_trace
        from loopengt.tracing.exports import to_json, to_jsonl, to_markdown

        try:
            trace = run_trace(check_run_id(run_id), runs.config)
        except LoopengtError as exc:
            raise _fail(exc) from None
        writer = {"markdown": to_markdown, "json": to_json, "jsonl": to_jsonl}[format]
        return TraceText(run_id=run_id, format=format, text=writer(trace))

    @mcp.tool()
    async def eval_run(
        run_id: str, judge_model: str | None = None, judge: bool = True
    ) -> dict[str, Any]:
        """Score a run: metrics from its trace (steps, turns, latency, tokens, cost, gates,
        retries, tool errors) and, with judge=true, an LLM judge's 0-1 score per criterion
        of the spec's goal and rubric, with reasons. Kept with the run."""
        from loopengt.evals.run_eval import aeval_run

        try:
            result = await aeval_run(
                check_run_id(run_id), judge_model=judge_model, judge=judge, config=runs.config
            )
        except LoopengtError as exc:
            raise _fail(exc) from None
        return result.as_dict()

    @mcp.tool()
    def list_templates() -> TemplateList:
        """The templates to start from: built-in, the project's and plugins', each with its
        pattern and purpose (a broken one with the problem)."""
        from loopengt.design.templates import list_templates as find

        rows = [
            TemplateRow(
                name=t.name,
                pattern=t.pattern if t.ok else None,
                purpose=t.purpose if t.ok else None,
                source=t.source,
                problem=t.problem,
            )
            for t in find(runs.root)
        ]
        return TemplateList(templates=rows)

    @mcp.tool()
    async def approve_run(
        run_id: str, approve: bool, comment: str = "", interrupt: str | None = None
    ) -> Started:
        """Answer the approval a run waits for (approve=false rejects it); the run continues
        in the background. When parallel steps wait at once, ``interrupt`` names which (its
        id from the run's pending approvals); by default the first."""
        from loopengt.runs.engine import aanswer_approval

        return await _continue(
            runs,
            run_id,
            RunStatus.WAITING_APPROVAL.value,
            lambda: aanswer_approval(
                run_id, approved=approve, comment=comment, interrupt=interrupt, config=runs.config
            ),
        )

    @mcp.tool()
    async def resume_run(run_id: str) -> Started:
        """Continue an interrupted, killed or failed run from its last checkpoint, in the
        background (finished steps are not run again)."""
        from loopengt.runs.engine import aresume_run

        return await _continue(runs, run_id, None, lambda: aresume_run(run_id, config=runs.config))

    @mcp.resource("loopengt://schema", mime_type="application/json")
    def schema() -> str:
        """The JSON Schema of a LoopSpec."""
        from loopengt.spec.schema import loopspec_json_schema

        return json.dumps(loopspec_json_schema(), indent=2)

    @mcp.resource("loopengt://templates/{name}", mime_type="application/yaml")
    def template(name: str) -> str:
        """A template's LoopSpec YAML."""
        from loopengt.design.templates import get_template

        try:
            return get_template(name, runs.root).text()
        except LoopengtError as exc:
            raise _fail(exc) from None

    @mcp.resource("loopengt://runs/{run_id}/trace", mime_type="application/json")
    def trace(run_id: str) -> str:
        """A run's trace as JSON."""
        from loopengt.runs.shared_trace import run_trace
        from loopengt.tracing.exports import to_json

        try:
            return to_json(run_trace(check_run_id(run_id), runs.config))
        except LoopengtError as exc:
            raise _fail(exc) from None

    @mcp.prompt()
    def architect(goal: str) -> str:
        """The loop architect's instructions, with the goal to design a loop for."""
        from loopengt.design import architect_prompt

        return f"{architect_prompt()}\n\nDesign a loop for this goal:\n{goal}"

    add_plugin_tools(mcp)
    return mcp


async def _exists(runs: ServerRuns, run_id: str) -> bool:
    from loopengt.runs.engine import run_record

    return (
        runs.driving(run_id)
        or await asyncio.to_thread(run_record, run_id, config=runs.config) is not None
    )


async def _continue(runs: ServerRuns, run_id: str, needs: str | None, work: Any) -> Started:
    """Resume or answer a run in the background, after the checks the engine would make."""
    from loopengt.runs.engine import run_record

    try:
        check_run_id(run_id)
        if runs.driving(run_id):
            raise LoopengtError(f"run {run_id!r} is already running in this server")
        record = await asyncio.to_thread(run_record, run_id, config=runs.config)
        if record is None:
            raise LoopengtError(f"no run {run_id!r} (see list_runs)")
        if needs is not None and record.status != needs:
            raise LoopengtError(f"run {run_id!r} is not waiting for approval ({record.status})")
    except LoopengtError as exc:
        raise _fail(exc) from None
    runs.start(run_id, work)
    return Started(run_id=run_id, status="running")


def _progress(ctx: Context[Any, Any, Any], steps: int) -> Any:
    """An event sink reporting each finished step as progress and a log line."""
    loop = asyncio.get_running_loop()
    done = [0]

    def sink(event: Any) -> None:
        if event.kind != "step_end":
            return
        done[0] += 1
        status = event.data.get("status", "")
        line = f"step {event.step} {status}"

        async def send() -> None:
            try:
                await ctx.report_progress(done[0], float(max(steps, done[0], 1)), line)
                await ctx.info(line)
            except Exception:  # the client went away: the run goes on
                pass

        loop.call_soon_threadsafe(lambda: loop.create_task(send()))

    return sink


def serve(
    transport: str = "stdio", host: str = "127.0.0.1", port: int = 8000, root: Path | str = "."
) -> None:
    """Run the server until the client (stdio) or a signal (HTTP) ends it."""
    import anyio

    server = build_server(Path(root), host=host, port=port)
    runs: ServerRuns = server.runs  # type: ignore[attr-defined]
    if transport == "stdio":
        _protect_stdout()

        async def stdio() -> None:
            await server.run_stdio_async()
            await runs.drain()  # a run started by a client that left still finishes

        anyio.run(stdio)
    else:
        anyio.run(server.run_streamable_http_async)


def _protect_stdout() -> None:
    """Only protocol messages may reach stdout: the protocol gets its own duplicate of file
    descriptor 1, and fd 1 itself is pointed at stderr, so a stray print — or native code
    such as llama.cpp writing to fd 1 — lands in the log instead of corrupting the stream."""
    import os
    import sys

    protocol = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(protocol, "w", encoding="utf-8", buffering=1)
