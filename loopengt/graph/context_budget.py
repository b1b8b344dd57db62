"""`policy.context_budget`: every model call's messages fit in a number of tokens.

Applied in the call drivers (`loopengt.graph.calls`), the one place every model call of every
pattern goes through, so a tool loop, a shared handoff history or a judge's prompt are all
bounded. The system prompt and the task (the first message) are always sent; LangChain's
`trim_messages` keeps the newest turns that fit after them, starting on a model reply or a
human message, so a tool call is never separated from its result. `summarize` also
condenses the dropped turns into one message with the agent's own model: one extra call,
traced and counted in the step's usage like any other.

Tokens are counted with LangChain's `count_tokens_approximately` (about four characters a
token): the providers' own counters need a tokenizer download (tiktoken) or a model load,
and a budget is a bound to stay well inside, not an exact figure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately

SUMMARY_PROMPT = (
    "Summarize the conversation below for the assistant who continues it: the facts, "
    "decisions and open questions, in a few short sentences. Reply with the summary only."
)
SUMMARY_HEAD = "Summary of the earlier conversation:"


def count_tokens(messages: Sequence[BaseMessage]) -> int:
    """The approximate token count every budget decision uses."""
    return count_tokens_approximately(messages)


class ContextBudget:
    """The budget of one agent's calls; ``summarizer`` gives the model that condenses the
    dropped turns in `summarize` mode (resolved only when needed)."""

    __slots__ = ("max_tokens", "mode", "summarizer")

    def __init__(
        self, max_tokens: int, mode: str = "trim", summarizer: Callable[[], Any] | None = None
    ) -> None:
        self.max_tokens = max_tokens
        self.mode = mode
        self.summarizer = summarizer

    def split(self, messages: list[BaseMessage]) -> tuple[list[BaseMessage], list[BaseMessage]]:
        """(what is sent, what was dropped): the messages unchanged when they fit; else the
        system prompt and the task (the first message after it), then the newest turns that
        fit, starting on a model reply or a human message so no tool result loses its call."""
        if count_tokens(messages) <= self.max_tokens:
            return messages, []
        head, rest = _head(messages)
        room = self.max_tokens - count_tokens(head)
        if room <= 0 or not rest:  # the task alone is over the budget: cut it to fit
            return _last(messages, self.max_tokens, partial=True), []
        recent = _last(rest, room, partial=False)
        return [*head, *recent], rest[: len(rest) - len(recent)]

    def summary_request(self, dropped: list[BaseMessage]) -> list[BaseMessage]:
        """The messages of the summarizing call, itself within the budget."""
        text = "\n\n".join(f"{m.type}: {m.text}" for m in dropped)
        request: list[BaseMessage] = [SystemMessage(SUMMARY_PROMPT), HumanMessage(text)]
        return _last(request, self.max_tokens // 2, partial=True)

    def with_summary(self, kept: list[BaseMessage], summary: str) -> list[BaseMessage]:
        """``kept`` with the summary right after the task, the newest turns trimmed again so
        the whole stays within the budget."""
        head, recent = _head(kept)
        note = HumanMessage(f"{SUMMARY_HEAD}\n{summary}")
        room = self.max_tokens - count_tokens([*head, note])
        return [*head, note, *(_last(recent, room, partial=False) if room > 0 else [])]


def _head(messages: list[BaseMessage]) -> tuple[list[BaseMessage], list[BaseMessage]]:
    """(the system messages and the first message after them: the task, the rest)."""
    first = next((i for i, m in enumerate(messages) if not isinstance(m, SystemMessage)), None)
    if first is None:
        return messages, []
    return messages[: first + 1], messages[first + 1 :]


def _last(messages: list[BaseMessage], budget: int, *, partial: bool) -> list[BaseMessage]:
    return trim_messages(
        messages,
        max_tokens=budget,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on=("human", "ai"),
        end_on=("human", "tool"),
        include_system=True,
        allow_partial=partial,
        text_splitter=_words,
    )


def _words(text: str) -> list[str]:
    """Pieces a message too long for the budget is cut at (the default: lines)."""
    return re.findall(r"\S+\s*", text) or [text]
