"""Durable runs: start, resume and answer approvals, over a LangGraph checkpointer.

The run id is the LangGraph ``thread_id``. Every superstep is checkpointed, so a run killed
at any point resumes from its last completed superstep: finished steps, and the model calls
they made, are never repeated. The CLI, tests and the MCP server all call these functions:
the async ones (`astart_run`, ...) drive the graph with `astream`, so a server can run many
at once on one event loop; `start_run` and the other sync names wrap them for scripts.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.memory import open_memory
from loopengt.project import shown_path
from loopengt.runs.index import RunRecord
from loopengt.runs.lease import effective, lease_seconds, new_owner
from loopengt.runs.resume_point import before_failure
from loopengt.runs.session import (
    RunResult,
    Session,
    active_sessions,
    run_session,
    thread_config,
)
from loopengt.runs.storage import (
    Storage,
    aopen_storage,
    is_postgres,
    open_storage,
    storage_url,
)
from loopengt.spec.loader import load_spec_text, read_spec_file
from loopengt.spec.models import LoopSpec
from loopengt.status import RunStatus
from loopengt.tracing.stream import EventSink

# a run id names files (`.loopengt/runs/<id>.json`): no separators, no leading dot
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass
class RunOptions:
    """How a run is made; stored with it so `resume` runs the same way."""

    model: str | None = None
    record: str | None = None
    replay: str | None = None
    checkpointer: str | None = None


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is one (it names files under `.loopengt/runs/`: `../x` must never
    reach a path), else a one-line `UserInputError`."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise UserInputError(
            f"run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return run_id


def new_run_id(spec: LoopSpec) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in spec.name.lower()).strip("-")[:24]
    return f"{slug or 'run'}-{time.strftime('%Y%m%d')}-{secrets.token_hex(3)}"


def prepare_inputs(
    spec: LoopSpec, given: dict[str, Any], *, cli_hints: bool = True
) -> dict[str, Any]:
    """The run input: declared defaults filled in, missing required and unknown keys refused.
    ``cli_hints``: the messages say how to pass the input with `--input` (not in Studio)."""
    inputs = dict(given)
    problems = []
    for name, declared in spec.inputs.items():
        if name in inputs:
            continue
        if declared.default is not None:
            inputs[name] = declared.default
        elif declared.required:
            hint = f" ({declared.description})" if declared.description else ""
            how = f": pass --input {name}=VALUE" if cli_hints else ""
            problems.append(f"missing input {name!r}{hint}{how}")
    if spec.inputs:
        for name in inputs:
            if name not in spec.inputs:
                declared_names = ", ".join(spec.inputs)
                problems.append(f"unknown input {name!r}; the spec declares: {declared_names}")
    for key in _mapped_inputs(spec):
        value = inputs.get(key)
        if key in inputs and not isinstance(value, list):
            how = f': pass --input \'{key}=["a", "b"]\'' if cli_hints else ""
            problems.append(
                f"input {key!r} is mapped over, so it must be a list "
                f"(got {type(value).__name__}){how}"
            )
    if problems:
        raise UserInputError("\n".join(problems))
    return inputs


def _mapped_inputs(spec: LoopSpec) -> list[str]:
    """The input keys a fan-out maps over (`input.KEY`)."""
    found = [step.map_over for step in spec.steps if step.map_over]
    if spec.fan_out is not None and spec.fan_out.map_over:
        found.append(spec.fan_out.map_over)
    return [path.partition(".")[2] for path in found if path.startswith("input.")]


async def astart_run(
    spec_path: str | os.PathLike[str],
    *,
    inputs: dict[str, Any] | None = None,
    run_id: str | None = None,
    options: RunOptions | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
    on_event: EventSink | None = None,
    stream_text: bool = False,
) -> RunResult:
    """Compile and run a spec from its start, checkpointing every superstep. ``config`` is
    the project's (default: `Config.load(root)`, the working directory when ``root`` is
    None); ``on_event`` subscribes to the run's event stream."""
    config = config or Config.load(root)
    options = options or RunOptions()
    path = Path(spec_path)
    text = read_spec_file(path)
    spec = load_spec_text(text, filename=str(path))
    run_input = prepare_inputs(spec, inputs or {})
    run_id = check_run_id(run_id) if run_id is not None else new_run_id(spec)
    async with (
        aopen_storage(options.checkpointer, config) as storage,
        open_memory(spec, storage_url(options.checkpointer, config), config.state_dir) as store,
    ):
        graph = _compile(spec, storage, options, config, store=store)  # bad models: no row
        if await storage.index.aget(run_id) is not None:
            raise UserInputError(f"run {run_id!r} already exists; resume it or pick another id")
        await _preflight(spec, config)  # a tool server that cannot start: no row either
        record = RunRecord(
            run_id=run_id,
            spec_name=spec.name,
            spec_path=str(path),
            spec_text=text,
            status=RunStatus.RUNNING.value,
            host=socket.gethostname(),
            pid=os.getpid(),
            owner=new_owner(),
            lease_until=time.time() + lease_seconds(),
            # the checkpointer URL may hold a password and is given again on resume
            options={**vars(options), "checkpointer": None, "inputs": run_input},
        )
        await storage.index.ainsert(record)
        session = Session(graph, spec, storage, record, config, on_event, stream_text)
        return await run_session(session, {"input": run_input})


async def aresume_run(
    run_id: str,
    *,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
    on_event: EventSink | None = None,
    stream_text: bool = False,
) -> RunResult:
    """Continue a run from its last checkpoint (after Ctrl-C, kill -9, a crash or a failure)."""
    config = config or Config.load(root)
    async with _existing(run_id, checkpointer, config) as (storage, record, spec, graph):
        seen = {"status": record.status, "owner": record.owner}  # as stored, for the claim
        if effective(record).status == RunStatus.RUNNING and (
            record.lease_until is not None or record.host == socket.gethostname()
        ):
            # two processes driving one thread would both call the models and race on it
            if record.host == socket.gethostname():
                raise UserInputError(
                    f"run {run_id!r} is still running (pid {record.pid}); stop it first"
                )
            left = max(0.0, (record.lease_until or 0) - time.time())
            raise UserInputError(
                f"run {run_id!r} is still running on {record.host} (pid {record.pid}); stop it"
                f" there, or if that machine is gone, resume when its lease ends in {left:.0f}s"
            )
        if record.status == RunStatus.WAITING_APPROVAL:
            raise UserInputError(
                f"run {run_id!r} is waiting for approval: `loopengt approve {run_id}` "
                f"or `loopengt reject {run_id}`"
            )
        if RunStatus(record.status).ended:
            raise UserInputError(
                f"run {run_id!r} already ended ({record.status}); nothing to resume"
            )
        run_config = thread_config(run_id)
        if record.status == RunStatus.FAILED:
            # the failed attempt reached the end of the graph; go back to the checkpoint
            # before the failing step and run it again from there
            run_config = await before_failure(graph, run_config) or run_config
        await _preflight(spec, config)
        await _mark_running(storage, record, seen)
        session = Session(graph, spec, storage, record, config, on_event, stream_text)
        # killed before its first checkpoint: nothing to continue from, so start it again
        # with its stored input (no model call had been saved)
        started = await graph.checkpointer.aget_tuple(run_config) is not None
        graph_input = None if started else {"input": record.options.get("inputs") or {}}
        return await run_session(session, graph_input, run_config)


async def aanswer_approval(
    run_id: str,
    *,
    approved: bool,
    comment: str = "",
    interrupt: str | None = None,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
    on_event: EventSink | None = None,
    stream_text: bool = False,
) -> RunResult:
    """Approve or reject the step a run is waiting on, then continue the run. Parallel steps
    can wait at once: ``interrupt`` picks one by its id (or a unique start of it, as
    `pending_approvals` lists them); without it the first is answered, the others wait on."""
    from langgraph.types import Command

    config = config or Config.load(root)
    async with _existing(run_id, checkpointer, config) as (storage, record, spec, graph):
        if record.status != RunStatus.WAITING_APPROVAL:
            raise UserInputError(
                f"run {run_id!r} is not waiting for approval (status: {record.status})"
            )
        value = {"approved": approved, "comment": comment}
        state = await graph.aget_state(thread_config(run_id))
        pending = list(getattr(state, "interrupts", ()) or ())
        if interrupt is not None:
            pending = [_pick(run_id, pending, interrupt)]
        # LangGraph needs to know which interrupt this answers: by default the first, as
        # `RunResult.pending` showed it
        resume = {pending[0].id: value} if pending else value
        await _preflight(spec, config)
        await _mark_running(storage, record, {"status": record.status, "owner": record.owner})
        answer: Command[Any] = Command(resume=resume)
        session = Session(graph, spec, storage, record, config, on_event, stream_text, value)
        return await run_session(session, answer)


async def apending_approvals(
    *,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
) -> list[dict[str, Any]]:
    """Every approval waiting, oldest run first: run id, interrupt id, step and message."""
    config = config or Config.load(root)
    records = await asyncio.to_thread(
        list_runs, status="waiting_approval", checkpointer=checkpointer, config=config
    )
    found: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: r.started_at):
        async with _existing(record.run_id, checkpointer, config, check_models=False) as (
            *_,
            graph,
        ):
            state = await graph.aget_state(thread_config(record.run_id))
        for item in getattr(state, "interrupts", ()) or ():
            found.append({"run_id": record.run_id, "interrupt": item.id, **_asked(item)})
    return found


def _pick(run_id: str, pending: list[Any], wanted: str) -> Any:
    """The pending interrupt whose id is ``wanted`` or starts with it (a unique start)."""
    exact = [p for p in pending if p.id == wanted]
    found = exact or [p for p in pending if wanted and p.id.startswith(wanted)]
    if len(found) == 1:
        return found[0]
    waiting = "; ".join(f"{p.id} (step {_asked(p)['step']})" for p in pending) or "none"
    what = "matches several approvals" if found else "is not an approval it waits on"
    raise UserInputError(f"run {run_id!r}: interrupt {wanted!r} {what}; waiting: {waiting}")


def _asked(interrupt: Any) -> dict[str, Any]:
    value = interrupt.value if isinstance(interrupt.value, dict) else {}
    return {"step": value.get("step"), "message": value.get("message")}


async def aget_run(
    run_id: str,
    *,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
) -> tuple[RunRecord, dict[str, Any]]:
    """A run's index row and its latest checkpointed state (for `loopengt runs show`)."""
    config = config or Config.load(root)
    async with _existing(run_id, checkpointer, config, check_models=False) as (_, record, _s, g):
        state = await g.aget_state(thread_config(run_id))
        return _progress(effective(record), dict(state.values)), dict(state.values)


def start_run(spec_path: str | os.PathLike[str], **kwargs: Any) -> RunResult:
    """`astart_run` for synchronous callers (runs its own event loop)."""
    return asyncio.run(astart_run(spec_path, **kwargs))


def resume_run(run_id: str, **kwargs: Any) -> RunResult:
    """`aresume_run` for synchronous callers."""
    return asyncio.run(aresume_run(run_id, **kwargs))


def answer_approval(run_id: str, **kwargs: Any) -> RunResult:
    """`aanswer_approval` for synchronous callers."""
    return asyncio.run(aanswer_approval(run_id, **kwargs))


def pending_approvals(**kwargs: Any) -> list[dict[str, Any]]:
    """`apending_approvals` for synchronous callers."""
    return asyncio.run(apending_approvals(**kwargs))


def get_run(run_id: str, **kwargs: Any) -> tuple[RunRecord, dict[str, Any]]:
    """`aget_run` for synchronous callers."""
    return asyncio.run(aget_run(run_id, **kwargs))


def run_record(
    run_id: str,
    *,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
) -> RunRecord | None:
    """A run's index row alone (no graph compiled), or None."""
    config = config or Config.load(root)
    if not _database_exists(checkpointer, config):
        return None
    with open_storage(checkpointer, config=config) as storage:
        return storage.index.get(run_id)


def list_runs(
    *,
    status: str | None = None,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
) -> list[RunRecord]:
    wanted = None if status is None else RunStatus.parse(status)  # before opening anything
    config = config or Config.load(root)
    if not _database_exists(checkpointer, config):
        return []  # a read command never creates a database
    with open_storage(checkpointer, config=config) as storage:
        records = [_checkpointed(storage, effective(r)) for r in storage.index.runs()]
    return [r for r in records if wanted is None or r.status == wanted]


# -- internals -------------------------------------------------------------------------------


def _compile(
    spec: LoopSpec,
    storage: Storage,
    options: RunOptions,
    config: Config,
    *,
    check_models: bool = True,
    resuming: bool = False,
    store: Any = None,
) -> Any:
    from loopengt.compile import compile_spec
    from loopengt.providers.cassette import Cassette
    from loopengt.providers.registry import resolve_model

    # --model: one model for every agent, resolved like any `model:` string
    use_model = options.model and not options.replay and check_models
    models = resolve_model(options.model, config=config) if use_model else None
    record: Any = options.record
    if record and resuming:  # go on recording into the cassette the run started
        record = Cassette.record(record, spec.name, append=True)
    return compile_spec(
        spec,
        checkpointer=storage.checkpointer,
        store=store,
        models=models,
        check_models=check_models,
        record=record,
        replay=options.replay,
        config=config,
    )


@asynccontextmanager
async def _existing(
    run_id: str, checkpointer: str | None, config: Config, *, check_models: bool = True
) -> AsyncIterator[tuple[Storage, RunRecord, LoopSpec, Any]]:
    check_run_id(run_id)
    if not _database_exists(checkpointer, config):
        where = shown_path(Path(storage_url(checkpointer, config)))
        raise UserInputError(f"no run {run_id!r} in {where} (see `loopengt runs`)")
    async with aopen_storage(checkpointer, config) as storage:
        record = await storage.index.aget(run_id)
        if record is None:
            raise UserInputError(f"no run {run_id!r} in {storage.url} (see `loopengt runs`)")
        # the spec as it was when the run started: the file may have changed since
        spec = load_spec_text(record.spec_text, filename=record.spec_path)
        stored = {k: v for k, v in record.options.items() if k in RunOptions.__dataclass_fields__}
        options = RunOptions(**{**stored, "checkpointer": checkpointer})
        # the memory store only for a run: reading one (`runs show`) creates no database
        url = storage_url(checkpointer, config) if check_models else None
        async with open_memory(spec, url, config.state_dir) as store:
            graph = _compile(
                spec,
                storage,
                options,
                config,
                check_models=check_models,
                resuming=True,
                store=store,
            )
            yield storage, record, spec, graph


async def _mark_running(storage: Storage, record: RunRecord, seen: dict[str, Any]) -> None:
    """Take the run over; refused when another process took it since we read its row."""
    owner = new_owner()
    claimed = await storage.index.aclaim(
        record.run_id,
        seen,
        status=RunStatus.RUNNING.value,
        stop_reason=None,
        ended_at=None,
        host=socket.gethostname(),
        pid=os.getpid(),
        owner=owner,
        lease_until=time.time() + lease_seconds(),
    )
    if not claimed:
        raise UserInputError(
            f"run {record.run_id!r} was taken over by another process meanwhile; "
            "see `loopengt runs`"
        )
    record.status = RunStatus.RUNNING.value
    record.owner = owner


async def _preflight(spec: LoopSpec, config: Config) -> None:
    """The spec's MCP servers, started before the run (see `loopengt.tools.preflight`)."""
    if not any(t.kind == "mcp" for t in spec.tools):
        return
    from loopengt.tools import preflight
    from loopengt.tools.mcp_client import close_all

    try:  # in a thread: a server's start-up waits, and the event loop may serve other runs
        await asyncio.to_thread(preflight, spec, config)
    except UserInputError:
        if not active_sessions():
            close_all()  # the servers that did start: no run will use them
        raise


def _database_exists(checkpointer: str | None, config: Config) -> bool:
    """Whether the run database is there (a PostgreSQL server is assumed to be)."""
    url = storage_url(checkpointer, config)
    return is_postgres(url) or Path(url).exists()


def _checkpointed(storage: Storage, record: RunRecord) -> RunRecord:
    """A run still going, or killed, with the steps and tokens of its last checkpoint: the
    index is written when a session ends, which a killed process never reaches."""
    if record.ended_at is not None or record.status not in _UNFINISHED:
        return record
    saved = storage.checkpointer.get_tuple(thread_config(record.run_id))
    return _progress(record, saved.checkpoint.get("channel_values", {}) if saved else {})


_UNFINISHED = (RunStatus.RUNNING, RunStatus.INTERRUPTED)


def _progress(record: RunRecord, values: dict[str, Any]) -> RunRecord:
    outputs, usage = values.get("outputs") or {}, values.get("usage") or {}
    record.steps_done = max(record.steps_done, len(outputs))
    record.tokens = max(record.tokens, int(usage.get("total_tokens", 0)))
    record.cost_usd = max(record.cost_usd, float(usage.get("cost_usd", 0.0)))
    return record
