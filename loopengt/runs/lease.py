"""Who drives a run: an owner lease in the run index, renewed by a heartbeat.

Why a lease and not a pid: a pid only says something on the machine that started the run. A
run killed on another machine would show `running` forever, and a pid reused by an unrelated
process would block `resume`. The owner renews ``lease_until`` while its session runs; a
`running` row past its lease has lost its process wherever it ran, and any machine sharing
the database may resume it. Taking a run over is a compare-and-set on the owner, so two
processes never both drive it, and an owner that finds its lease taken stops its session
without writing the run's outcome.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from loopengt.graph.calls import RunTakenOver
from loopengt.runs.index import RunIndex, RunRecord
from loopengt.status import RunStatus


def lease_seconds() -> float:
    """How long a claim holds without a heartbeat: `LOOPENGT_LEASE_SECONDS`, default 30."""
    try:
        return max(0.5, float(os.environ.get("LOOPENGT_LEASE_SECONDS", "30")))
    except ValueError:
        return 30.0


def new_owner() -> str:
    """`host:pid:token`: the token tells apart two processes that got the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def effective(record: RunRecord, now: float | None = None) -> RunRecord:
    """A row still `running` whose owner is gone is shown (and resumable) as `interrupted`:
    its lease ran out (any machine), or its process is dead on this host (seen at once)."""
    if record.status != RunStatus.RUNNING:
        return record
    now = time.time() if now is None else now
    expired = record.lease_until is not None and record.lease_until < now
    if expired or (record.host == socket.gethostname() and record.pid and not _alive(record.pid)):
        record.status = RunStatus.INTERRUPTED.value
    return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class LeaseLost(RunTakenOver):
    """This process no longer owns the run it was driving."""


class Lease:
    """This process's claim on one run while a session drives it.

    `run` renews the claim every third of the lease, and adds the time run so far to the
    row's ``run_seconds`` (so a killed run's duration is known too). When a renewal finds
    the run owned by another process, or cannot renew in time, it calls ``on_lost``.

    `check` is the fence: a model reply that arrives after the lease could have run out (the
    process was paused, or cut off from the database) is not used, so the step is not
    checkpointed by an owner another process may have replaced."""

    def __init__(self, index: RunIndex, record: RunRecord, owner: str) -> None:
        self.index = index
        self.record = record
        self.owner = owner
        self.seconds = lease_seconds()
        self.base = record.run_seconds  # earlier sessions' time
        self.started = time.monotonic()
        self.renewed = self.started
        self.lost = False

    def run_seconds(self) -> float:
        return self.base + (time.monotonic() - self.started)

    def fields(self) -> dict[str, Any]:
        """The row's lease columns, renewed from now."""
        return {"lease_until": time.time() + self.seconds, "run_seconds": self.run_seconds()}

    def check(self) -> None:
        """Raise `LeaseLost` unless the claim was renewed within the lease."""
        if self.lost or time.monotonic() - self.renewed > self.seconds:
            self.lost = True
            raise LeaseLost(f"run {self.record.run_id}: this process's lease on it ran out")

    async def run(self, on_lost: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            asked = time.monotonic()
            try:
                held = await self.index.aclaim(
                    self.record.run_id, {"owner": self.owner}, **self.fields()
                )
            except Exception:  # the database is unreachable for now: try again
                held = time.monotonic() - self.renewed < self.seconds
            else:
                self.renewed = asked if held else self.renewed
            if not held:
                self.lost = True
                on_lost()
                return
