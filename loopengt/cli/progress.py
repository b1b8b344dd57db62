"""Live progress of a run on stderr: the running step and its agent, elapsed time, tokens so
far, and — on a terminal — the model's text as it streams. Without a terminal (CI, pipes)
it prints one line per finished step instead."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from loopengt.cli.output import err_console

STREAM_LINES = 6


class RunProgress:
    def __init__(self) -> None:
        self.agents: dict[str, str] = {}  # node name -> agent name, sent with run_start
        self.live_mode = err_console.is_terminal
        self.started = time.monotonic()
        self.step_started: dict[str, float] = {}
        self.tokens = 0
        self.text: dict[str, str] = {}
        self.live: Live | None = None

    def __enter__(self) -> RunProgress:
        if self.live_mode:
            self.live = Live(self._render(), console=err_console, refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    # the engine's event sink
    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        node = data.get("node") or ""
        if kind == "run_start":
            self.agents = data.get("agents") or {}
        elif kind == "step_start" and self._shown(node):
            self.step_started[node] = time.monotonic()
            self.text[node] = ""
        elif kind == "text" and node in self.step_started:
            self.text[node] = (self.text.get(node, "") + data["text"])[-2000:]
        elif kind == "update":
            # an `__interrupt__` update is a tuple of Interrupts, not a state update
            update = data.get("update")
            usage = (update.get("usage") if isinstance(update, dict) else None) or {}
            self.tokens += int(usage.get("total_tokens", 0))
        elif kind == "step_end" and node in self.step_started:
            if data.get("skipped"):
                del self.step_started[node]
                self.text.pop(node, None)
            else:
                self._finished(node, data.get("error"), bool(data.get("waiting")))
        if self.live is not None:
            self.live.update(self._render())

    def _shown(self, node: str) -> bool:
        # pass-through and routing nodes (`X__passed`, `X__join`) are plumbing, not steps
        return bool(node) and "__" not in node

    def _label(self, node: str) -> str:
        agent = self.agents.get(node)
        return f"{node} ({agent})" if agent and agent != node else node

    def _finished(self, node: str, error: Any, waiting: bool = False) -> None:
        seconds = time.monotonic() - self.step_started.pop(node)
        self.text.pop(node, None)
        mark = "[yellow]…[/]" if waiting else "[red]✗[/]" if error else "[green]✓[/]"
        line = f"{mark} {self._label(node)}  [dim]{seconds:.1f}s · {self.tokens} tokens so far[/]"
        if self.live is not None:
            self.live.console.print(line, highlight=False)
        else:
            err_console.print(line, highlight=False)

    def _render(self) -> Any:
        elapsed = time.monotonic() - self.started
        running = ", ".join(self._label(n) for n in self.step_started) or "starting"
        header = Spinner(
            "dots", Text.from_markup(f"{running}  [dim]{elapsed:.1f}s · {self.tokens} tokens[/]")
        )
        parts: list[Any] = [header]
        for node in self.step_started:
            lines = self.text.get(node, "").splitlines()[-STREAM_LINES:]
            if lines:
                parts.append(Text("\n".join(lines), style="dim"))
        return Group(*parts)
