"""`TraceRecorder`: writes a run's trace as it happens, as a subscriber of its event stream
(`loopengt.tracing.stream.RunEvents`).

Each event is appended (and flushed) to `.loopengt/runs/<run_id>.jsonl` the moment it
occurs, so a run killed with SIGKILL still has everything up to its last step. `finish()`
writes `runs/<run_id>.json` from every line of that file, so a resumed run's trace holds
all its sessions. Secrets are redacted before anything is written.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from loopengt.redaction import redact, secret_values
from loopengt.serialization import jsonable, write_atomically
from loopengt.tracing.events import Event, EventKind, dumps_line, read_events, summarize
from loopengt.tracing.stream import RunEvent


class SharedLog(Protocol):
    """A run's event lines in a store every machine reads (`runs.shared_trace`)."""

    def read(self) -> list[Event]: ...

    def __call__(self, line: Event) -> None: ...

    def close(self) -> None: ...


class TraceRecorder:
    """Records one session of run ``run_id`` (appending to an existing `.jsonl`)."""

    def __init__(
        self,
        run_id: str,
        *,
        runs_dir: Path | str = Path(".loopengt/runs"),
        spec_name: str | None,
        shared: SharedLog | None = None,
    ) -> None:
        """``shared``: where every line also goes, for a run other machines may continue
        (its earlier sessions are read from there)."""
        self.run_id = run_id
        self.runs_dir = Path(runs_dir)
        self.spec_name = spec_name
        self.jsonl_path = self.runs_dir / f"{run_id}.jsonl"
        self.json_path = self.runs_dir / f"{run_id}.json"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.shared = shared
        if shared is not None:
            self._lines = shared.read()
        else:
            self._lines = read_events(self.jsonl_path) if self.jsonl_path.exists() else []
        """Every line of the file: earlier sessions' as read, this one's as written."""
        self.session = 1 + sum(1 for e in self._lines if e.get("kind") == EventKind.RUN_START)
        self._secrets = secret_values()
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def __call__(self, event: RunEvent) -> None:
        """Append one event (streamed text is for live displays, not the trace)."""
        if event.kind == EventKind.TEXT:
            return
        line = {**event.to_dict(), "session": self.session}
        # plain JSON first, so secrets inside objects (pydantic outputs, ...) are found too
        line = redact(jsonable(line), self._secrets)
        with self._lock:  # one writer at a time, and lines in the order of their times
            if self._file is None or self._file.closed:
                self._file = self.jsonl_path.open("a", encoding="utf-8")
            self._file.write(dumps_line(line))
            self._file.flush()  # in the OS now: survives a SIGKILL of this process
            self._lines.append(line)
        if self.shared is not None:
            self.shared(line)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self.shared is not None:
            self.shared.close()

    def finish(
        self,
        *,
        status: str,
        stop_reason: str | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write `runs/<run_id>.json` from the session's lines (after its `run_end`)."""
        self.close()
        end = next((e for e in reversed(self._lines) if e.get("kind") == EventKind.RUN_END), {})
        trace = summarize(
            self._lines,
            run_id=self.run_id,
            spec=self.spec_name,
            status=status,
            stop_reason=redact(stop_reason, self._secrets),
            outputs=end.get("outputs"),  # as written: redacted, plain JSON
            usage=usage,
        )
        # built from lines redacted when written, and the reason redacted above
        write_atomically(self.json_path, dumps_line(trace))
        return self.json_path
