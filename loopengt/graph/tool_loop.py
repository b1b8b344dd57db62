"""The tool-calling loop of an agent with tools: bounded rounds, and a tool that raises gives
the model its error text instead of ending the step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from loopengt.graph.gates import as_text

if TYPE_CHECKING:
    from loopengt.graph.model_calls import ModelCalls


def run_tool_loop(
    calls: ModelCalls,
    model: BaseChatModel,
    messages: list[BaseMessage],
    tools: list[BaseTool],
    max_rounds: int,
) -> tuple[str, list[BaseMessage]]:
    """Let the model call tools until it answers in text or runs out of rounds; a tool that
    raises gives the model its error text instead of ending the step."""
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools(tools)
    conversation = list(messages)
    recorded: list[BaseMessage] = []
    for _ in range(max_rounds + 1):
        reply = calls(bound, conversation)
        recorded.append(reply)
        conversation.append(reply)
        if not reply.tool_calls:
            return str(reply.text), recorded
        for call in reply.tool_calls:
            content, status = run_tool(by_name.get(call["name"]), call, calls.config)
            result = ToolMessage(content, tool_call_id=call["id"] or "", status=status)
            recorded.append(result)
            conversation.append(result)
    final = calls(model, [*conversation, HumanMessage("Give your final answer now.")])
    recorded.append(final)
    return str(final.text), recorded


def run_tool(tool: BaseTool | None, call: ToolCall, config: RunnableConfig) -> tuple[str, str]:
    """(content, status) of one tool call; an error becomes text the model can act on."""
    try:
        if tool is None:
            # also what a model gets for a tool (or transfer) it was not offered
            raise LookupError(f"unknown tool {call['name']!r}")
        return as_text(tool.invoke(call["args"], config)), "success"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}", "error"
