"""The one vocabulary of statuses, shared by the graph state, the run index, traces, events
and the CLI. Values are plain strings in state, checkpoints and files (a `StrEnum` member
compares equal to its value), so nothing stored needs these classes to be read back."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    """A process is driving it now."""
    WAITING_APPROVAL = "waiting_approval"
    """Paused at a step that needs a human yes (`loopengt approve` / `reject`)."""
    INTERRUPTED = "interrupted"
    """Ctrl-C, or its process died: resumable from the last checkpoint."""
    COMPLETED = "completed"
    """The loop reached its end, or a stop condition marked it done."""
    STOPPED = "stopped"
    """Halted by a policy limit (turns, time, budget, a gate out of attempts, a step
    timeout); the outputs made so far are kept."""
    FAILED = "failed"
    """A step failed (model error after its retries, no valid structured output, bad run
    input); `loopengt resume` repeats only the failed work."""
    REJECTED = "rejected"
    """An approval was refused."""

    @property
    def ended(self) -> bool:
        """Nothing more will happen to the run (failed runs can still be resumed)."""
        return self in (RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.REJECTED)

    @classmethod
    def parse(cls, text: str) -> RunStatus:
        """The status ``text`` names, exactly or as the prefix of one (`waiting`); a
        `UserInputError` listing the statuses otherwise."""
        from loopengt.errors import UserInputError

        wanted = text.strip().lower().replace("-", "_")
        found = [s for s in cls if s.value == wanted] or [
            s for s in cls if wanted and s.value.startswith(wanted)
        ]
        if len(found) == 1:
            return found[0]
        names = ", ".join(s.value for s in cls)
        what = "is ambiguous" if found else "is not a run status"
        raise UserInputError(f"status {text!r} {what}; use one of {names}")


# gravest last: parallel branches may end differently, the run takes the gravest
SEVERITY = (
    None,
    RunStatus.RUNNING,
    RunStatus.COMPLETED,
    RunStatus.STOPPED,
    RunStatus.FAILED,
    RunStatus.REJECTED,
)


class StepStatus(StrEnum):
    """What happened to one step (one node run) in a trace or the event stream."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    """Its model call ran past the step timeout (after the policy's retries)."""
    SKIPPED = "skipped"
    """Reached after the run had stopped: it did no work."""
    REJECTED = "rejected"
    """Its gate or its approval said no."""
    WAITING = "waiting"
    """Paused for an approval."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or a kill while it ran."""
    RUNNING = "running"
    """Started and not ended (still going, or killed)."""
