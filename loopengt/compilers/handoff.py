"""handoff: one active agent at a time; an agent passes control, with a task and the context
the next agent needs, by calling a ``transfer_to_<agent>`` tool, which becomes a
``Command(goto=<agent>)``. An agent that answers without a transfer ends the run.

Node names are agent names; outputs are keyed by agent. The receiving agent sees the goal,
the run input and the handed-off task/context, not the earlier agents' private
conversations, unless ``handoff.share_history`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel, Field

from loopengt.graph.context import CompileContext, describe_agent
from loopengt.graph.model_calls import ModelCalls
from loopengt.graph.nodes import (
    context_parts,
    failed_call,
    policy_halt,
    retry_policy,
    started,
    stop,
    stop_condition,
)
from loopengt.graph.state import STATUS_COMPLETED, Graph, LoopState, Update, add_node, new_graph
from loopengt.graph.tool_loop import run_tool
from loopengt.spec.models import AgentRole, StepSpec
from loopengt.spec.roles import handoff_entry, step_agent
from loopengt.templating import placeholders, render

TRANSFER_PREFIX = "transfer_to_"


class TransferArgs(BaseModel):
    task: str = Field(description="What the receiving agent should do next.")
    context: str = Field(
        default="",
        description="What they need to know: findings, decisions, open questions.",
    )


def handoff_targets(ctx: CompileContext, agent: AgentRole) -> list[AgentRole]:
    """The agents this one may hand off to: its ``handoffs``, else every other agent."""
    names = agent.handoffs or [a.name for a in ctx.spec.agents if a.name != agent.name]
    return [ctx.spec.agent(name) for name in names]


def transfer_tool(target: AgentRole) -> BaseTool:
    def transfer(task: str, context: str = "") -> str:
        # never run: the node intercepts the call and turns it into a Command
        return f"Transferred to {target.name}."

    about = f" ({target.description.strip()})" if target.description else ""
    return StructuredTool.from_function(
        transfer,
        name=f"{TRANSFER_PREFIX}{target.name}",
        description=f"Hand control to {target.name}{about}, with a task and its context.",
        args_schema=TransferArgs,
    )


@dataclass
class Outcome:
    """One activation of an agent: its text, the messages to record, and a transfer if any."""

    text: str
    recorded: list[BaseMessage] = field(default_factory=list)
    target: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


def run_agent(
    calls: ModelCalls,
    model: BaseChatModel,
    conversation: list[BaseMessage],
    tools: list[BaseTool],
    transfers: dict[str, str],
    max_rounds: int,
) -> Outcome:
    """A tool-calling loop that stops at the first transfer call (``transfers`` maps a transfer
    tool's name, among ``tools``, to its agent); a tool that raises gives the model its error
    text instead of ending the run."""
    by_name = {t.name: t for t in tools}
    bound: Any = model.bind_tools(tools) if tools else model
    conversation = list(conversation)
    outcome = Outcome(text="")
    texts: list[str] = []
    for _ in range(max_rounds + 1):
        reply = calls(bound, conversation)
        outcome.recorded.append(reply)
        conversation.append(reply)
        if reply.text:
            texts.append(str(reply.text))
        outcome.text = "\n".join(texts)
        if not reply.tool_calls:
            return outcome
        handoff = next((c for c in reply.tool_calls if c["name"] in transfers), None)
        for call in reply.tool_calls:
            if handoff is not None:
                # every call gets an answer so a shared history stays a valid conversation
                done = call is handoff
                content = f"Transferred to {transfers[call['name']]}." if done else "Not run."
                status = "success" if done else "error"
            else:
                content, status = run_tool(by_name.get(call["name"]), call, calls.config)
            result = ToolMessage(content, tool_call_id=call["id"] or "", status=status)
            outcome.recorded.append(result)
            conversation.append(result)
        if handoff is not None:
            outcome.target, outcome.args = transfers[handoff["name"]], dict(handoff["args"])
            return outcome
    final = calls(model, [*conversation, HumanMessage("Give your final answer now.")])
    outcome.recorded.append(final)
    outcome.text = "\n".join([*texts, str(final.text)]).strip()
    return outcome


class AgentNode:
    """One agent's turn: answer (ending the run) or hand off to another agent."""

    def __init__(self, ctx: CompileContext, agent: AgentRole) -> None:
        self.ctx = ctx
        self.agent = agent
        self.targets = handoff_targets(ctx, agent)
        self.transfer_tools = [transfer_tool(t) for t in self.targets]
        self.transfers = {f"{TRANSFER_PREFIX}{t.name}": t.name for t in self.targets}
        self.step = next(
            (s for s in ctx.spec.steps if step_agent(ctx.spec, s.name) == agent.name), None
        )
        block = ctx.spec.handoff
        self.max_handoffs = block.max_handoffs if block else None
        self.share_history = block.share_history if block else False
        self.timeout = ctx.spec.policy.step_timeout_seconds
        self.__name__ = agent.name

    def prompt(self, state: LoopState) -> str:
        task = state.get("task")
        step: StepSpec | None = self.step
        if step is not None and step.prompt:
            text = render(
                step.prompt,
                goal=self.ctx.spec.goal,
                inputs=state.get("input") or {},
                outputs=state.get("outputs") or {},
                variables={"task": task},
            )
            if task and "task" not in placeholders(step.prompt):
                text += f"\n\nTask handed off to you:\n{task}"
            return text
        parts = context_parts(self.ctx, state)
        if step is not None and step.description:
            parts.append(f"Your part: {step.description}")
        if task:
            parts.append(f"Task handed off to you:\n{task}")
        return "\n\n".join(parts)

    def system(self) -> str:
        text = describe_agent(self.agent)
        if self.targets:
            names = "\n".join(f"- {t.name}: {t.description or t.name}" for t in self.targets)
            text += (
                "\n\nYou can hand off to another agent when it is better suited for what "
                "remains: call its transfer tool with a task and the context it needs "
                f"(it sees nothing else). The agents:\n{names}\n"
                "Otherwise, answer directly; your answer ends the run."
            )
        return text

    def __call__(self, state: LoopState, config: RunnableConfig, runtime: Runtime) -> Command[Any]:
        if state.get("stop_reason"):
            return Command(goto=END)
        first = started(self.ctx, state)
        halted = policy_halt(self.ctx, state)
        if halted:
            return Command(goto=END, update={**first, **halted})
        history = list(state.get("messages") or []) if self.share_history else []
        prompt = HumanMessage(self.prompt(state))
        conversation: list[BaseMessage] = [SystemMessage(self.system()), *history, prompt]
        calls = ModelCalls(config, self.timeout)
        update: Update = {**first, "turns": 1, "visits": {self.agent.name: 1}}
        try:
            outcome = run_agent(
                calls,
                self.ctx.model_for(self.agent),
                conversation,
                [*self.ctx.tools_for(self.agent), *self.transfer_tools],
                self.transfers,
                self.agent.max_tool_calls,
            )
        except Exception as exc:
            what = f"agent {self.agent.name!r}"
            failed = failed_call(exc, self.ctx, runtime, what, self.agent.name)
            return Command(goto=END, update={**update, **failed, "usage": calls.usage()})
        update["usage"] = calls.usage()
        update["messages"] = [prompt, *outcome.recorded]
        if outcome.target is None:
            update["outputs"] = {self.agent.name: outcome.text}
            halted = stop_condition(self.ctx, self.agent.name, outcome.text)
            return Command(
                goto=END, update={**update, "status": STATUS_COMPLETED, **(halted or {})}
            )
        return self.hand_off(state, update, outcome)

    def hand_off(self, state: LoopState, update: Update, outcome: Outcome) -> Command[Any]:
        task = str(outcome.args.get("task") or "").strip()
        context = str(outcome.args.get("context") or "").strip()
        handed = task + (f"\n\nContext from {self.agent.name}:\n{context}" if context else "")
        text = outcome.text or f"(handed off to {outcome.target}: {task})"
        update["outputs"] = {self.agent.name: text}
        # every activation but the first was started by a handoff
        done = sum((state.get("visits") or {}).values())
        if self.max_handoffs is not None and done >= self.max_handoffs:
            why = f"max_handoffs: reached the limit of {self.max_handoffs} handoffs"
            return Command(goto=END, update={**update, **stop(why)})
        halted = stop_condition(self.ctx, self.agent.name, text)
        if halted:
            return Command(goto=END, update={**update, **halted})
        update.update({"active_agent": outcome.target, "task": handed})
        return Command(goto=outcome.target, update=update)


def build(ctx: CompileContext) -> Graph:
    graph = new_graph(ctx.channels("active_agent", "task"))
    for agent in ctx.spec.agents:
        node = AgentNode(ctx, agent)
        targets = tuple(t.name for t in node.targets)
        # destinations: Command routing is dynamic, so tell LangGraph (and the mermaid drawing)
        add_node(
            graph, agent.name, node, retry_policy=retry_policy(ctx), destinations=(*targets, END)
        )
    graph.add_edge(START, handoff_entry(ctx.spec))
    return graph
