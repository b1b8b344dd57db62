"""Live progress of a run on stderr: the running step and its agent, elapsed time, tokens so
far, and — on a terminal — the model's text as it streams. Without a terminal (CI, pipes)
it prints one line per finished step instead."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text

from loopengt.cli.output import err_console
from loopengt.status import StepStatus
from loopengt.tracing.events import EventKind
from loopengt.tracing.views import first_line

if TYPE_CHECKING:
    from loopengt.tracing.stream import RunEvent

STREAM_LINES = 6
MARKS = {
    StepStatus.OK: "[green]✓[/]",
    StepStatus.WAITING: "[yellow]…[/]",
    StepStatus.REJECTED: "[yellow]↺[/]",
    StepStatus.TIMED_OUT: "[red]⏱[/]",
    StepStatus.INTERRUPTED: "[yellow]⏸[/]",
}


class RunProgress:
    def __init__(self) -> None:
        self.agents: dict[str, str] = {}  # node name -> agent name, from its step_start
        self.live_mode = err_console.is_terminal
        self.started = time.monotonic()
        self.step_started: dict[str, float] = {}
        self.tokens = 0
        self.text: dict[str, str] = {}
        self.live: Live | None = None
        self.spinner = Spinner("dots")  # one spinner: it animates from its own start time

    def __enter__(self) -> RunProgress:
        if self.live_mode:
            # the live display renders `self` on every refresh (__rich__), so the elapsed
            # time moves between events too
            self.live = Live(self, console=err_console, refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    # a subscriber of the run's event stream (loopengt.tracing.stream)
    def __call__(self, event: RunEvent) -> None:
        node = event.step or ""
        if event.kind == EventKind.STEP_START:
            self.step_started[node] = time.monotonic()
            self.agents[node] = event.agent or node
            self.text[node] = ""
        elif event.kind == EventKind.TEXT and node in self.step_started:
            self.text[node] = (self.text.get(node, "") + event.data["text"])[-2000:]
        elif event.kind == EventKind.MODEL_CALL:
            data = event.data
            self.tokens += int(data.get("input_tokens") or 0) + int(data.get("output_tokens") or 0)
        elif event.kind == EventKind.RETRY:
            data = event.data
            why = "gate said no" if data.get("cause") == "gate" else "error"
            reason = escape(first_line(data.get("reason"), 100))  # a reason may hold [brackets]
            self._line(
                f"[yellow]↻[/] {self._label(node)}  [dim]attempt {data.get('attempt')} "
                f"({why}{': ' + reason if reason else ''})[/]"
            )
        elif event.kind == EventKind.STEP_END and node in self.step_started:
            status = event.data.get("status")
            if status == StepStatus.SKIPPED:  # reached after the run stopped: no work done
                del self.step_started[node]
                self.text.pop(node, None)
            else:
                self._finished(node, status)
        if self.live is not None:
            self.live.refresh()

    def __rich__(self) -> Any:
        return self._render()

    def _line(self, line: str) -> None:
        if self.live is not None:
            self.live.console.print(line, highlight=False)
        else:
            err_console.print(line, highlight=False)

    def _label(self, node: str) -> str:
        agent = self.agents.get(node)
        return f"{node} ({agent})" if agent and agent != node else node

    def _finished(self, node: str, status: Any) -> None:
        seconds = time.monotonic() - self.step_started.pop(node)
        self.text.pop(node, None)
        mark = MARKS.get(status, "[red]✗[/]")
        self._line(
            f"{mark} {self._label(node)}  [dim]{seconds:.1f}s · {self.tokens} tokens so far[/]"
        )

    def _render(self) -> Any:
        elapsed = time.monotonic() - self.started
        running = ", ".join(self._label(n) for n in self.step_started) or "starting"
        self.spinner.update(
            text=Text.from_markup(f"{running}  [dim]{elapsed:.1f}s · {self.tokens} tokens[/]")
        )
        parts: list[Any] = [self.spinner]
        for node in self.step_started:
            lines = self.text.get(node, "").splitlines()[-STREAM_LINES:]
            if lines:
                parts.append(Text("\n".join(lines), style="dim"))
        return Group(*parts)
