"""Errors the CLI turns into a one-line message and an exit code (see SPEC.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class LoopengtError(Exception):
    """An expected failure with a message meant for the user."""

    exit_code = EXIT_RUN_FAILED

    def messages(self) -> list[str]:
        """What the CLI prints, one line per problem."""
        return [f"error: {line}" for line in str(self).splitlines()] or [
            f"error: {type(self).__name__}"
        ]


class UserInputError(LoopengtError):
    """Bad spec, argument or configuration: exit code 2."""

    exit_code = EXIT_BAD_INPUT
