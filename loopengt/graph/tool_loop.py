"""The tool-calling loop of an agent: bounded rounds; a tool that raises gives the model its
error text instead of ending the turn; a transfer tool (handoff) ends the loop at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool

from loopengt.graph.calls import Calls, ToolUse, Work

FINAL_ANSWER = "Give your final answer now."


@dataclass
class Outcome:
    """What one turn's model calls came to."""

    recorded: list[BaseMessage] = field(default_factory=list)
    """Every reply and tool result, in order, for the state's message history."""
    texts: list[str] = field(default_factory=list)
    """The text of every reply that had some."""
    last: str = ""
    """The text of the last reply: a step's answer."""
    target: str | None = None
    """The agent a transfer tool handed off to, if one was called."""
    args: dict[str, Any] = field(default_factory=dict)
    """The transfer's arguments (task, context)."""

    def reply(self, reply: AIMessage) -> None:
        self.recorded.append(reply)
        self.last = str(reply.text)
        if self.last:
            self.texts.append(self.last)


def tool_loop(
    calls: Calls,
    model: BaseChatModel,
    messages: list[BaseMessage],
    tools: list[BaseTool],
    max_rounds: int,
    transfers: Mapping[str, str] | None = None,
) -> Work[Outcome]:
    """Let the model call ``tools`` until it answers in text or runs out of rounds.

    ``transfers`` maps the names of transfer tools among ``tools`` to the agent each hands
    off to: the first one called ends the loop with that target (every other call of the
    same reply is answered "Not run.", so a shared history stays a valid conversation).
    """
    transfers = transfers or {}
    by_name = {t.name: t for t in tools}
    bound: Any = model.bind_tools(tools) if tools else model
    conversation = list(messages)
    outcome = Outcome()
    for _ in range(max_rounds + 1):
        reply: AIMessage = yield calls.model(bound, conversation)
        outcome.reply(reply)
        conversation.append(reply)
        if not reply.tool_calls:
            return outcome
        handoff = next((c for c in reply.tool_calls if c["name"] in transfers), None)
        for call in reply.tool_calls:
            if handoff is None:
                content, status = yield ToolUse(by_name.get(call["name"]), call)
            elif call is handoff:
                content, status = f"Transferred to {transfers[call['name']]}.", "success"
            else:
                content, status = "Not run.", "error"
            result = ToolMessage(content, tool_call_id=call["id"] or "", status=status)
            outcome.recorded.append(result)
            conversation.append(result)
        if handoff is not None:
            outcome.target, outcome.args = transfers[handoff["name"]], dict(handoff["args"])
            return outcome
    final = yield calls.model(model, [*conversation, HumanMessage(FINAL_ANSWER)])
    outcome.reply(final)
    return outcome
