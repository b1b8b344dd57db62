"""handoff: one active agent at a time; an agent passes control, with a task and the context
the next agent needs, by calling a ``transfer_to_<agent>`` tool, which becomes a
``Command(goto=<agent>)``. An agent that answers without a transfer ends the run.

Node names are agent names; outputs are keyed by agent. The receiving agent sees the goal,
the run input and the handed-off task/context, not the earlier agents' private
conversations, unless ``handoff.share_history`` is true.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END, START
from langgraph.types import Command
from pydantic import BaseModel, Field

from loopengt.graph.calls import Calls, Work
from loopengt.graph.context import CompileContext
from loopengt.graph.policy import stop, stop_condition
from loopengt.graph.prompts import context_parts, describe_agent
from loopengt.graph.state import Graph, LoopState, Update
from loopengt.graph.structured import structured_call
from loopengt.graph.tool_loop import Outcome, tool_loop
from loopengt.graph.turn import AgentTurn, Result
from loopengt.graph.wiring import add_turn
from loopengt.spec.models import AgentRole, StepSpec
from loopengt.spec.roles import handoff_entry, handoff_targets, step_agent
from loopengt.status import RunStatus
from loopengt.templating import placeholders, render

TRANSFER_PREFIX = "transfer_to_"
NO_HANDOFF = "none"


class TransferArgs(BaseModel):
    task: str = Field(description="What the receiving agent should do next.")
    context: str = Field(
        default="",
        description="What they need to know: findings, decisions, open questions.",
    )


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


class HandoffTurn(AgentTurn):
    """One agent's turn: answer (ending the run) or hand off to another agent."""

    def __init__(self, ctx: CompileContext, agent: AgentRole) -> None:
        timeout = ctx.spec.policy.step_timeout_seconds
        super().__init__(ctx, agent, agent.name, what=f"agent {agent.name!r}", timeout=timeout)
        self.targets = [ctx.spec.agent(name) for name in handoff_targets(ctx.spec, agent.name)]
        self.transfer_tools = [transfer_tool(t) for t in self.targets]
        self.transfers = {f"{TRANSFER_PREFIX}{t.name}": t.name for t in self.targets}
        self.step = next(
            (s for s in ctx.spec.steps if step_agent(ctx.spec, s.name) == agent.name), None
        )
        block = ctx.spec.handoff
        self.max_handoffs = block.max_handoffs if block else None
        self.share_history = block.share_history if block else False

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
        parts = context_parts(self.ctx.spec, state)
        if step is not None and step.description:
            parts.append(f"Your part: {step.description}")
        if task:
            parts.append(f"Task handed off to you:\n{task}")
        return "\n\n".join(parts)

    def system(self, by_tool: bool = True) -> str:
        """The agent's system prompt, and how it hands off. By tool, the transfer tools'
        descriptions say who each agent is; with the agents listed here as well, the
        embedded model sent 3 of 3 billing requests to tech, the agent listed last."""
        text = describe_agent(self.agent)
        if not self.targets:
            return text
        how = (
            "call the transfer tool of that agent with a task and the context it needs"
            if by_tool
            else f"set 'handoff' to its name (else '{NO_HANDOFF}'), with a 'task' and the "
            "'context' it needs"
        )
        text += (
            "\n\nYou can hand off to another agent when it is better suited for what "
            f"remains: {how} (it sees nothing else). Otherwise, answer directly; your answer "
            "ends the run."
        )
        if not by_tool:
            names = "\n".join(f"- {t.name}: {t.description or t.name}" for t in self.targets)
            text += f"\nThe agents:\n{names}"
        return text

    def work(self, state: LoopState, calls: Calls) -> Work[tuple[HumanMessage, Outcome]]:
        history = list(state.get("messages") or []) if self.share_history else []
        prompt = HumanMessage(self.prompt(state))
        model = self.ctx.model_for(self.agent)
        # a model that cannot call tools (a plugin's, say) hands off in structured output;
        # agents with tools of their own were refused such a model at compile time
        by_tool = getattr(model, "tool_calling", True) is not False or not self.targets
        conversation: list[BaseMessage] = [SystemMessage(self.system(by_tool)), *history, prompt]
        if not by_tool:
            outcome = yield from self.structured_handoff(calls, model, conversation)
            return prompt, outcome
        outcome = yield from tool_loop(
            calls,
            model,
            conversation,
            [*self.ctx.tools_for(self.agent), *self.transfer_tools],
            self.agent.max_tool_calls,
            self.transfers,
        )
        return prompt, outcome

    def structured_handoff(
        self, calls: Calls, model: BaseChatModel, conversation: list[BaseMessage]
    ) -> Work[Outcome]:
        schema = {
            "type": "object",
            "properties": {
                "answer": {"type": "string"},
                "handoff": {"enum": [NO_HANDOFF, *(t.name for t in self.targets)]},
                "task": {"type": "string"},
                "context": {"type": "string"},
            },
            "required": ["answer", "handoff"],
        }
        value = yield from structured_call(
            calls, model, conversation, schema, what=f"agent {self.agent.name!r} handoff"
        )
        outcome = Outcome()
        outcome.reply(AIMessage(str(value.get("answer") or "")))
        if value["handoff"] != NO_HANDOFF:
            outcome.target = str(value["handoff"])
            outcome.args = {k: value.get(k) or "" for k in ("task", "context")}
        return outcome

    def done(
        self, state: LoopState, update: Update, outcome: tuple[HumanMessage, Outcome], calls: Calls
    ) -> Result:
        prompt, result = outcome
        update["usage"] = calls.usage()
        update["messages"] = [prompt, *result.recorded]
        text = "\n".join(result.texts)
        if result.target is None:
            update["outputs"] = {self.agent.name: text}
            halted = stop_condition(self.ctx, self.agent.name, text)
            completed = {"status": RunStatus.COMPLETED.value, **(halted or {})}
            return Command(goto=END, update={**update, **completed})
        task = str(result.args.get("task") or "").strip()
        context = str(result.args.get("context") or "").strip()
        handed = task + (f"\n\nContext from {self.agent.name}:\n{context}" if context else "")
        text = text or f"(handed off to {result.target}: {task})"
        update["outputs"] = {self.agent.name: text}
        # every activation but the first was started by a handoff
        done = sum((state.get("visits") or {}).values())
        if self.max_handoffs is not None and done >= self.max_handoffs:
            why = f"max_handoffs: reached the limit of {self.max_handoffs} handoffs"
            return Command(goto=END, update={**update, **stop(why)})
        halted = stop_condition(self.ctx, self.agent.name, text)
        if halted:
            return Command(goto=END, update={**update, **halted})
        update.update({"active_agent": result.target, "task": handed})
        return Command(goto=result.target, update=update)

    def ended(self, update: Update) -> Result:
        return Command(goto=END, update=update)


def build(ctx: CompileContext) -> Graph:
    graph = ctx.new_graph("active_agent", "task")
    for agent in ctx.spec.agents:
        turn = HandoffTurn(ctx, agent)
        targets = tuple(t.name for t in turn.targets)
        # destinations: Command routing is dynamic, so tell LangGraph (and the mermaid drawing)
        add_turn(graph, turn, destinations=(*targets, END))
    graph.add_edge(START, handoff_entry(ctx.spec))
    return graph
