"""The server's side of runs: paths confined to the root, specs from text or file, and runs
driven in the background on the server's event loop.

A run started here is a run like any other: indexed and checkpointed in the root's
`.loopengt/`, so it survives the client disconnecting, and a new server process (or
`loopengt resume`) reports on it and resumes it. The server only remembers, for this
process, the tasks driving its runs and why a run failed before it was indexed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from loopengt.config import Config
from loopengt.errors import LoopengtError, UserInputError
from loopengt.serialization import jsonable
from loopengt.spec import LoopSpec, load_spec, load_spec_text
from loopengt.spec.yaml_source import MAX_SPEC_BYTES
from loopengt.status import RunStatus

log = logging.getLogger("loopengt.mcp")

SPECS_DIR = "specs"  # under .loopengt/: specs sent as text, so a run can name its file


def confine(root: Path, given: str, what: str = "path") -> Path:
    """``given`` (relative to ``root``, or absolute) resolved — symlinks followed — and
    inside ``root``; a `UserInputError` otherwise."""
    if not given or "\x00" in given:
        raise UserInputError(f"{what}: empty or invalid")
    if ".." in Path(given).parts:
        raise UserInputError(f"{what} {given!r}: '..' is not allowed; paths stay in the root")
    candidate = Path(given) if Path(given).is_absolute() else root / given
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise UserInputError(f"{what} {given!r}: outside the server's root {root}")
    return resolved


def spec_text(spec_yaml: str) -> str:
    if len(spec_yaml.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise UserInputError(f"spec_yaml is larger than {MAX_SPEC_BYTES / 1e6:g} MB; refusing it")
    return spec_yaml


class ServerRuns:
    """Specs and background runs of one server, rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.config = Config.load(self.root)
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.failed_to_start: dict[str, str] = {}

    # -- specs ----------------------------------------------------------------------------

    def spec_source(self, spec_yaml: str | None, path: str | None) -> tuple[str, str]:
        """(text, name for messages) from exactly one of ``spec_yaml`` and ``path``."""
        if (spec_yaml is None) == (path is None):
            raise UserInputError("give exactly one of spec_yaml (the YAML text) or path")
        if spec_yaml is not None:
            return spec_text(spec_yaml), "spec_yaml"
        assert path is not None
        file = confine(self.root, path)
        if not file.is_file():
            raise UserInputError(f"path {path!r}: no such file in the root")
        from loopengt.spec.loader import read_spec_file

        return read_spec_file(file), path

    def spec_file(self, spec_yaml: str | None, path: str | None) -> tuple[Path, LoopSpec]:
        """A validated spec and a file in the root holding it (text is saved under
        `.loopengt/specs/`, named by its content, so the run's record names a real file)."""
        if path is not None and spec_yaml is None:
            file = confine(self.root, path)
            return file, load_spec(file)
        text, name = self.spec_source(spec_yaml, path)
        spec = load_spec_text(text, filename=name)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        folder = self.config.state_dir / SPECS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"{spec.name[:40]}-{digest}.yaml"
        if not file.exists():
            file.write_text(text, encoding="utf-8")
        return file, spec

    # -- background runs ------------------------------------------------------------------

    def start(self, run_id: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task[Any]:
        """Drive ``work()`` (a run engine call) in the background; its outcome is in the run
        index, or, when it failed before the run was indexed, in ``failed_to_start``."""
        self.failed_to_start.pop(run_id, None)

        async def drive() -> Any:
            try:
                return await work()
            except LoopengtError as exc:  # failed runs are in the index with their reason
                self.failed_to_start[run_id] = str(exc).splitlines()[0]
                log.info("run %s: %s", run_id, self.failed_to_start[run_id])
            except Exception as exc:  # never let a run take the server down
                self.failed_to_start[run_id] = f"{type(exc).__name__}: {exc}"
                log.exception("run %s failed", run_id)
            finally:
                self.tasks.pop(run_id, None)
            return None

        task = asyncio.get_running_loop().create_task(drive(), name=f"run {run_id}")
        self.tasks[run_id] = task
        return task

    def driving(self, run_id: str) -> bool:
        return run_id in self.tasks

    async def info(self, run_id: str) -> dict[str, Any]:
        """What get_run answers: the engine's view of the run (a `running` row whose process
        is gone is interrupted), its latest checkpoint, and from the trace the step going on
        and the approval it waits for."""
        from loopengt.runs.engine import aget_run

        try:
            record, state = await aget_run(run_id, config=self.config)
        except UserInputError:
            if run_id in self.failed_to_start:
                return {"run_id": run_id, "spec": "", "status": "failed",
                        "error": self.failed_to_start[run_id]}  # fmt: skip
            if self.driving(run_id):  # started, not indexed yet
                return {"run_id": run_id, "spec": "", "status": RunStatus.RUNNING.value}
            raise
        status = record.status
        if self.driving(run_id):  # resumed or answered here: the row may not say so yet
            status = RunStatus.RUNNING.value
        current, pending = self._from_trace(run_id)
        outputs = jsonable(state.get("outputs") or {})
        failed = status == RunStatus.FAILED
        return {
            "run_id": run_id,
            "spec": record.spec_name,
            "status": status,
            "current_step": current if status == RunStatus.RUNNING else None,
            "outputs": outputs,
            "stop_reason": record.stop_reason,
            "steps_completed": len(outputs),
            "turns": int(state.get("turns") or 0),
            "error": (self.failed_to_start.get(run_id) or record.stop_reason) if failed else None,
            "pending_approval": pending if status == RunStatus.WAITING_APPROVAL else None,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
        }

    def _from_trace(self, run_id: str) -> tuple[str | None, dict[str, Any]]:
        """(the step started last and not ended, the last approval asked for)."""
        from loopengt.tracing.events import INTERRUPT, STEP_END, STEP_START, read_events

        path = self.config.state_dir / "runs" / f"{run_id}.jsonl"
        going: dict[str, str] = {}
        asked: dict[str, Any] = {}
        for event in read_events(path) if path.is_file() else []:
            kind, step_id = event.get("kind"), event.get("step_id") or ""
            if kind == STEP_START and step_id:
                going[step_id] = str(event.get("step"))
            elif kind == STEP_END:
                going.pop(step_id, None)
            elif kind == INTERRUPT and isinstance(event.get("payload"), dict):
                asked = dict(event["payload"])
        return next(reversed(going.values()), None), asked

    async def drain(self) -> None:
        """Wait for the runs this process drives to end (the client has gone; they go on)."""
        while self.tasks:
            log.info("client gone; waiting for %d run(s) to end", len(self.tasks))
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)
