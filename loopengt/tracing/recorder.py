"""`TraceRecorder`: writes a run's trace as it happens.

Each event is appended (and flushed) to `.loopengt/runs/<run_id>.jsonl` the moment it
occurs, so a run killed with SIGKILL still has everything up to its last step. `finish()`
writes `runs/<run_id>.json` from every line of that file, so a resumed run's trace holds
all its sessions. The recorder is only one more callback handler: LangSmith's tracer (added
by LangChain when its environment variables are set) keeps running beside it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from loopengt.redaction import redact, secret_values
from loopengt.serialization import jsonable, write_atomically
from loopengt.tracing.callbacks import GraphCallbacks
from loopengt.tracing.events import (
    ERROR,
    GATE,
    INTERRUPT,
    RUN_END,
    RUN_START,
    STOP,
    Event,
    dumps_line,
    read_events,
    summarize,
)

INTERRUPT_NODE = "__interrupt__"


class TraceRecorder(GraphCallbacks):
    """Records one session of run ``run_id`` (appending to an existing `.jsonl`)."""

    def __init__(
        self,
        run_id: str,
        *,
        runs_dir: Path | str = Path(".loopengt/runs"),
        spec_name: str | None = None,
        max_chars: int | None = 2000,
        agents: Mapping[str, str] | None = None,
    ) -> None:
        """``agents`` maps node names to agent names (see `node_agents`) for the events'
        ``agent`` field; ``max_chars`` truncates prompts, responses and tool results."""
        super().__init__(max_chars)
        self.run_id = run_id
        self.runs_dir = Path(runs_dir)
        self.spec_name = spec_name
        self.agents = dict(agents or {})
        self.jsonl_path = self.runs_dir / f"{run_id}.jsonl"
        self.json_path = self.runs_dir / f"{run_id}.json"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        earlier = read_events(self.jsonl_path) if self.jsonl_path.exists() else []
        self.session = 1 + sum(1 for e in earlier if e.get("kind") == RUN_START)
        self._secrets = secret_values()
        self._file: IO[str] | None = None
        self._session_started: float | None = None
        self._stopped = False

    # -- writing -------------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> Event:
        """Append one event; ``step`` (a node name) fills ``agent`` when it is known."""
        step = fields.pop("step", None)
        agent = fields.pop("agent", None) or (self.agents.get(step) if step else None)
        with self._lock:  # one writer at a time, and lines in the order of their times
            event: Event = {
                "ts": time.time(),
                "kind": kind,
                "run_id": self.run_id,
                "session": self.session,
                "step": step,
                **({"agent": agent} if agent else {}),
                **fields,
            }
            # plain JSON first, so secrets inside objects (pydantic outputs, ...) are found too
            event = redact(jsonable(event), self._secrets)
            if self._session_started is None:
                self._session_started = event["ts"]
            if self._file is None or self._file.closed:
                self._file = self.jsonl_path.open("a", encoding="utf-8")
            self._file.write(dumps_line(event))
            self._file.flush()  # in the OS now: survives a SIGKILL of this process
        return event

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def finish(
        self,
        *,
        status: str,
        stop_reason: str | None = None,
        outputs: Any = None,
        usage: Mapping[str, Any] | None = None,
    ) -> Path:
        """Record the session's end and write `runs/<run_id>.json`; returns its path."""
        with self._lock:
            began = self._session_started
            duration = None if began is None else round(time.time() - began, 6)
            end = self.event(
                RUN_END,
                status=status,
                stop_reason=stop_reason,
                duration_s=duration,
                usage=dict(usage) if usage is not None else None,
                outputs=outputs,
            )
            self.close()
            events = read_events(self.jsonl_path)
            trace = summarize(
                events,
                run_id=self.run_id,
                spec=self.spec_name,
                status=status,
                stop_reason=stop_reason,
                outputs=end.get("outputs"),  # as written: redacted, plain JSON
                usage=usage,
            )
            write_atomically(self.json_path, dumps_line(redact(trace, self._secrets)))
        return self.json_path

    # -- engine side: what the graph's update stream says ---------------------------------------
    def state_update(self, node: str, update: Any) -> None:
        """Gate, error, stop and interrupt events from one ``stream_mode="updates"`` chunk."""
        if node == INTERRUPT_NODE:
            for pending in update if isinstance(update, list | tuple) else [update]:
                self._interrupt(pending)
            return
        if not isinstance(update, Mapping):
            return  # a node that returned nothing
        step_id = self._last_step.get(node)
        for record in update.get("gates") or []:
            passed = bool(record.get("passed"))
            self.event(
                GATE,
                step=node,
                step_id=step_id,
                gate_step=record.get("step"),
                gate_kind=record.get("kind"),
                passed=passed,
                reason=record.get("reason") or "",
                attempt=record.get("attempt"),
            )
            if not passed and not update.get("stop_reason"):
                with self._lock:
                    self._gate_retries[node] = dict(record)
        for record in update.get("errors") or []:
            error = record.get("error") if isinstance(record, Mapping) else record
            self.event(ERROR, step=node, step_id=step_id, error=self._clip(str(error)))
        reason = update.get("stop_reason")
        if reason and not self._stopped:
            self._stopped = True  # the state keeps the first stop reason; so does the trace
            self.event(STOP, step=node, step_id=step_id, reason=reason, status=update.get("status"))

    def _interrupt(self, pending: Any) -> None:
        payload = getattr(pending, "value", pending)
        step = self._interrupted
        node = step.node if step else None
        if node is None and isinstance(payload, Mapping):
            node = payload.get("step")
        self.event(
            INTERRUPT,
            step=node,
            step_id=step.step_id if step else None,
            interrupt_id=getattr(pending, "id", None),
            payload=payload,
        )


def node_agents(spec: Any) -> dict[str, str]:
    """Node name -> agent name for a LoopSpec: steps run by their agent; in the supervisor
    and handoff patterns the nodes are the agents themselves."""
    from loopengt.spec.roles import step_agent

    out: dict[str, str] = {}
    for step in spec.steps:
        try:
            out[step.name] = step.agent or step_agent(spec, step.name)
        except Exception:  # a step the pattern gives no agent (roles cannot be derived)
            continue
    agents = {agent.name: agent.name for agent in spec.agents}
    if spec.pattern in ("supervisor_worker", "handoff"):
        return {**out, **agents}
    return {**agents, **out}
