"""Shared rich consoles: results on stdout, problems and progress on stderr."""

from __future__ import annotations

from rich.console import Console

# soft_wrap: a problem is one line even when it is wider than the terminal
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
