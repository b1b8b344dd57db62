"""Durable runs: start, resume and answer approvals, over a LangGraph checkpointer.

The run id is the LangGraph ``thread_id``. Every superstep is checkpointed, so a run killed
at any point resumes from its last completed superstep: finished steps, and the model calls
they made, are never repeated. The CLI, tests and the MCP server all call these functions.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopengt.config import config_section
from loopengt.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    LoopengtError,
    UserInputError,
)
from loopengt.project import STATE_DIR
from loopengt.runs.index import STATUS_INTERRUPTED, STATUS_WAITING, RunRecord
from loopengt.runs.storage import Storage, open_storage
from loopengt.spec.loader import load_spec_text, read_spec_file
from loopengt.spec.models import LoopSpec

EventSink = Callable[[str, dict[str, Any]], None]
ENDED = ("completed", "stopped", "rejected")


@dataclass
class RunOptions:
    """How a run is made; stored with it so `resume` runs the same way."""

    model: str | None = None
    record: str | None = None
    replay: str | None = None
    checkpointer: str | None = None


@dataclass
class RunResult:
    run_id: str
    status: str
    stop_reason: str | None
    outputs: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    trace_path: str | None = None
    pending: dict[str, Any] | None = None  # the approval a waiting run asks for
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.status in ("completed", STATUS_WAITING):
            return EXIT_OK
        if self.status == STATUS_INTERRUPTED:
            return EXIT_INTERRUPTED
        return EXIT_RUN_FAILED


class RunInterrupted(LoopengtError):
    """Ctrl-C: the run is checkpointed and can be resumed."""

    exit_code = EXIT_INTERRUPTED


def new_run_id(spec: LoopSpec) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in spec.name.lower()).strip("-")[:24]
    return f"{slug or 'run'}-{time.strftime('%Y%m%d')}-{secrets.token_hex(3)}"


def prepare_inputs(spec: LoopSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The run input: declared defaults filled in, missing required and unknown keys refused."""
    inputs = dict(given)
    problems = []
    for name, declared in spec.inputs.items():
        if name in inputs:
            continue
        if declared.default is not None:
            inputs[name] = declared.default
        elif declared.required:
            hint = f" ({declared.description})" if declared.description else ""
            problems.append(f"missing input {name!r}{hint}: pass --input {name}=VALUE")
    if spec.inputs:
        for name in inputs:
            if name not in spec.inputs:
                declared_names = ", ".join(spec.inputs)
                problems.append(f"unknown input {name!r}; the spec declares: {declared_names}")
    if problems:
        raise UserInputError("\n".join(problems))
    return inputs


def start_run(
    spec_path: str | os.PathLike[str],
    *,
    inputs: dict[str, Any] | None = None,
    run_id: str | None = None,
    options: RunOptions | None = None,
    root: Path | str = ".",
    on_event: EventSink | None = None,
    stream_text: bool = False,
) -> RunResult:
    """Compile and run a spec from its start, checkpointing every superstep."""
    options = options or RunOptions()
    path = Path(spec_path)
    text = read_spec_file(path)
    spec = load_spec_text(text, filename=str(path))
    run_input = prepare_inputs(spec, inputs or {})
    run_id = run_id or new_run_id(spec)
    with open_storage(options.checkpointer, root) as storage:
        graph = _compile(spec, storage, options)  # bad models fail before a run is indexed
        if storage.index.get(run_id) is not None:
            raise UserInputError(f"run {run_id!r} already exists; resume it or pick another id")
        record = RunRecord(
            run_id=run_id,
            spec_name=spec.name,
            spec_path=str(path),
            spec_text=text,
            status="running",
            host=socket.gethostname(),
            pid=os.getpid(),
            # the checkpointer URL may hold a password and is given again on resume
            options={**vars(options), "checkpointer": None, "inputs": run_input},
        )
        storage.index.insert(record)
        return _drive(
            graph, spec, storage, record, {"input": run_input}, root, on_event, stream_text
        )


def resume_run(
    run_id: str,
    *,
    checkpointer: str | None = None,
    root: Path | str = ".",
    on_event: EventSink | None = None,
    stream_text: bool = False,
) -> RunResult:
    """Continue a run from its last checkpoint (after Ctrl-C, kill -9, a crash or a failure)."""
    with _existing(run_id, checkpointer, root) as (storage, record, spec, graph):
        seen = {"status": record.status, "pid": record.pid}  # as stored, for the claim
        if _effective(record).status == "running" and record.host == socket.gethostname():
            # two processes driving one thread would both call the models and race on it
            raise UserInputError(
                f"run {run_id!r} is still running (pid {record.pid}); stop it first"
            )
        if record.status == STATUS_WAITING:
            raise UserInputError(
                f"run {run_id!r} is waiting for approval: `loopengt approve {run_id}` "
                f"or `loopengt reject {run_id}`"
            )
        if record.status in ENDED:
            raise UserInputError(
                f"run {run_id!r} already ended ({record.status}); nothing to resume"
            )
        config = _config(run_id)
        if record.status == "failed":
            # the failed attempt reached the end of the graph; go back to the checkpoint
            # before the failing step and run it again from there
            config = _before_failure(graph, config) or config
        _mark_running(storage, record, seen)
        return _drive(graph, spec, storage, record, None, root, on_event, stream_text, config)


def answer_approval(
    run_id: str,
    *,
    approved: bool,
    comment: str = "",
    checkpointer: str | None = None,
    root: Path | str = ".",
    on_event: EventSink | None = None,
    stream_text: bool = False,
) -> RunResult:
    """Approve or reject the step a run is waiting on, then continue the run."""
    from langgraph.types import Command

    with _existing(run_id, checkpointer, root) as (storage, record, spec, graph):
        if record.status != STATUS_WAITING:
            raise UserInputError(
                f"run {run_id!r} is not waiting for approval (status: {record.status})"
            )
        value = {"approved": approved, "comment": comment}
        # parallel steps can wait at once; LangGraph then needs to know which one this
        # answers: the first, as `RunResult.pending` showed it (the others keep waiting)
        pending = getattr(graph.get_state(_config(run_id)), "interrupts", ()) or ()
        resume = {pending[0].id: value} if pending else value
        _mark_running(storage, record, {"status": record.status, "pid": record.pid})
        answer: Command[Any] = Command(resume=resume)
        return _drive(graph, spec, storage, record, answer, root, on_event, stream_text)


def get_run(
    run_id: str, *, checkpointer: str | None = None, root: Path | str = "."
) -> tuple[RunRecord, dict[str, Any]]:
    """A run's index row and its latest checkpointed state (for `loopengt runs show`)."""
    with _existing(run_id, checkpointer, root, check_models=False) as (_, record, _s, graph):
        return _effective(record), dict(graph.get_state(_config(run_id)).values)


def list_runs(
    *, status: str | None = None, checkpointer: str | None = None, root: Path | str = "."
) -> list[RunRecord]:
    with open_storage(checkpointer, root) as storage:
        records = [_effective(r) for r in storage.index.runs()]
    return [r for r in records if status is None or r.status == status]


# -- internals -------------------------------------------------------------------------------


def _compile(
    spec: LoopSpec,
    storage: Storage,
    options: RunOptions,
    *,
    check_models: bool = True,
    resuming: bool = False,
) -> Any:
    from loopengt.cassette import Cassette
    from loopengt.compile import compile_spec
    from loopengt.models import resolve_model

    # --model: one model for every agent, resolved like any `model:` string
    use_model = options.model and not options.replay and check_models
    models = resolve_model(options.model) if use_model else None
    record: Any = options.record
    if record and resuming:  # go on recording into the cassette the run started
        record = Cassette.record(record, spec.name, append=True)
    return compile_spec(
        spec,
        checkpointer=storage.checkpointer,
        models=models,
        check_models=check_models,
        record=record,
        replay=options.replay,
    )


@contextmanager
def _existing(
    run_id: str, checkpointer: str | None, root: Path | str, *, check_models: bool = True
) -> Iterator[tuple[Storage, RunRecord, LoopSpec, Any]]:
    with open_storage(checkpointer, root) as storage:
        record = storage.index.get(run_id)
        if record is None:
            raise UserInputError(f"no run {run_id!r} in {storage.url} (see `loopengt runs`)")
        # the spec as it was when the run started: the file may have changed since
        spec = load_spec_text(record.spec_text, filename=record.spec_path)
        stored = {k: v for k, v in record.options.items() if k in RunOptions.__dataclass_fields__}
        options = RunOptions(**{**stored, "checkpointer": checkpointer})
        graph = _compile(spec, storage, options, check_models=check_models, resuming=True)
        yield storage, record, spec, graph


def _config(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}}


def _before_failure(graph: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    for snapshot in graph.get_state_history(config):
        if snapshot.next and not snapshot.values.get("stop_reason"):
            return dict(snapshot.config)
    return None


def _mark_running(storage: Storage, record: RunRecord, seen: dict[str, Any]) -> None:
    """Take the run over; refused when another process took it since we read its row."""
    claimed = storage.index.claim(
        record.run_id,
        seen,
        status="running",
        stop_reason=None,
        ended_at=None,
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    if not claimed:
        raise UserInputError(
            f"run {record.run_id!r} was taken over by another process meanwhile; "
            "see `loopengt runs`"
        )
    record.status = "running"


def _effective(record: RunRecord) -> RunRecord:
    """A row still `running` whose process is gone on this host was killed: interrupted."""
    if record.status == "running" and record.host == socket.gethostname() and record.pid:
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            record.status = STATUS_INTERRUPTED
        except PermissionError:
            pass
    return record


def _drive(
    graph: Any,
    spec: LoopSpec,
    storage: Storage,
    record: RunRecord,
    graph_input: Any,
    root: Path | str,
    on_event: EventSink | None,
    stream_text: bool,
    config: dict[str, Any] | None = None,
) -> RunResult:
    from loopengt.tracing import TraceRecorder, node_agents

    emit = on_event or (lambda kind, data: None)
    runs_dir = Path(root).resolve() / STATE_DIR / "runs"
    max_chars = int(config_section("trace", root).get("max_text_chars", 4000))
    recorder = TraceRecorder(
        record.run_id,
        runs_dir=runs_dir,
        spec_name=spec.name,
        max_chars=max_chars,
        agents=node_agents(spec),
    )
    resumed = graph_input is None or not isinstance(graph_input, dict)
    recorder.event("run_start", spec=spec.name, input=record.options.get("inputs"), resumed=resumed)
    config = {**(config or _config(record.run_id)), "callbacks": [recorder]}
    config["metadata"] = {"loopengt_run_id": record.run_id, "loopengt_spec": spec.name}
    started = time.monotonic()
    modes = ["updates", "tasks", *(["messages"] if stream_text else [])]
    try:
        for mode, chunk in graph.stream(graph_input, config, stream_mode=modes):
            _dispatch(mode, chunk, recorder, emit)
    except KeyboardInterrupt:
        _finish(graph, storage, record, recorder, started, STATUS_INTERRUPTED)
        raise RunInterrupted(
            f"run {record.run_id} interrupted; continue it with `loopengt resume {record.run_id}`"
        ) from None
    except Exception as exc:
        from loopengt.model_errors import explain_model_error

        reason = f"error: {explain_model_error(exc)}"
        _finish(graph, storage, record, recorder, started, "failed", reason)
        raise LoopengtError(f"run {record.run_id} failed: {reason}") from exc
    finally:
        from loopengt.mcp_tools import close_all

        close_all()
    result = _finish(graph, storage, record, recorder, started)
    emit("run_end", {"result": result})
    return result


def _dispatch(mode: str, chunk: Any, recorder: Any, emit: EventSink) -> None:
    if mode == "updates":
        for node, update in chunk.items():
            recorder.state_update(node, update)
            emit("update", {"node": node, "update": update})
    elif mode == "tasks":
        if "result" not in chunk and "error" not in chunk:
            emit("step_start", {"node": chunk.get("name")})
        else:
            # a step that stops the run (failure, rejection) returns normally: say so
            result = chunk.get("result")
            stopped = result.get("stop_reason") if isinstance(result, dict) else None
            data = {"node": chunk.get("name"), "error": chunk.get("error") or stopped}
            emit("step_end", {**data, "waiting": bool(chunk.get("interrupts"))})
    elif mode == "messages":
        message, metadata = chunk
        text = getattr(message, "text", "")
        text = text() if callable(text) else text
        if text:
            emit("text", {"node": metadata.get("langgraph_node"), "text": text})


def _finish(
    graph: Any,
    storage: Storage,
    record: RunRecord,
    recorder: Any,
    started: float,
    status: str | None = None,
    reason: str | None = None,
) -> RunResult:
    snapshot = graph.get_state(_config(record.run_id))
    values = dict(snapshot.values or {})
    pending = None
    if status is None:
        interrupts = getattr(snapshot, "interrupts", ()) or ()
        if interrupts:
            status, pending = STATUS_WAITING, dict(interrupts[0].value)
        else:
            status = values.get("status") or ("running" if snapshot.next else "completed")
    reason = reason or values.get("stop_reason")
    outputs = values.get("outputs") or {}
    usage = values.get("usage") or {}
    trace_path = recorder.finish(status=status, stop_reason=reason, outputs=outputs, usage=usage)
    ended = time.time()
    storage.index.update(
        record.run_id,
        status=status,
        stop_reason=reason,
        steps_done=len(outputs),
        tokens=int(usage.get("total_tokens", 0)),
        cost_usd=float(usage.get("cost_usd", 0.0)),
        ended_at=None if status == STATUS_WAITING else ended,
        trace_path=str(trace_path),
    )
    return RunResult(
        run_id=record.run_id,
        status=status,
        stop_reason=reason,
        outputs=outputs,
        usage=usage,
        trace_path=str(trace_path),
        pending=pending,
        duration_s=time.monotonic() - started,
    )
