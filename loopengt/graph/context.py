"""What every pattern compiler needs: the spec, the chat model and tools of each agent, the
project configuration, and the policy numbers in the form the nodes use them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.graph.state import GATE_CHANNELS, Graph, new_graph
from loopengt.graph.structured import set_method
from loopengt.spec.models import AgentRole, LoopSpec, StepSpec
from loopengt.spec.roles import step_agent

if TYPE_CHECKING:
    from loopengt.providers.cassette import Cassette

ModelsArg = BaseChatModel | Mapping[str, BaseChatModel] | None
DEFAULT_MAX_CONCURRENCY = 16


@dataclass
class CompileContext:
    """One compilation: the spec, where its models and tools come from, and the project
    configuration every node reads (models, prices, tools)."""

    spec: LoopSpec
    models: ModelsArg = None
    """Injected chat models: one for every agent, or a mapping from agent name."""
    cassette: Cassette | None = None
    """Record or replay every model call (loopengt.providers.cassette)."""
    config: Config = field(default_factory=Config.load)
    """The project's configuration (default: the working directory's)."""
    _model_cache: dict[str, BaseChatModel] = field(default_factory=dict)
    _tool_cache: dict[str, list[BaseTool]] = field(default_factory=dict)

    def agent_for_step(self, step: StepSpec) -> AgentRole:
        # a step's own agent first: patterns may synthesize steps that are not in the spec
        if step.agent is not None:
            return self.spec.agent(step.agent)
        return self.spec.agent(step_agent(self.spec, step.name))

    def model_for(self, agent: AgentRole, step: StepSpec | None = None) -> BaseChatModel:
        """The chat model for an agent (or one of its steps). Replaying a cassette, one shared
        replaying model that needs no model configured; recording, the model wrapped."""
        if self.cassette is not None and self.cassette.replaying:
            return self.cassette.model()
        model = self._configured_model(agent, step)
        if self.cassette is not None:
            model = self.cassette.model(model)
        set_method(model, self._structured_output(agent, step))
        return model

    def _structured_output(self, agent: AgentRole, step: StepSpec | None) -> str:
        """The agent's `structured_output`, else `[llm.<provider>] structured_output`, else
        `[llm] structured_output`, else auto. An injected model shared by several agents keeps
        the first agent's setting."""
        if agent.structured_output:
            return agent.structured_output
        name = (step.model if step else None) or agent.model or self.spec.defaults.model
        provider = (name or self.config.default_model or "").partition(":")[0]
        own = self.config.provider(provider).get("structured_output") if provider else None
        return str(own or self.config.llm.get("structured_output") or "auto")

    def _configured_model(self, agent: AgentRole, step: StepSpec | None) -> BaseChatModel:
        """Injected models first, then the step's/agent's `model:` string, then the spec
        defaults and configuration."""
        if isinstance(self.models, BaseChatModel):
            return self.models
        if isinstance(self.models, Mapping) and agent.name in self.models:
            return self.models[agent.name]
        name = (step.model if step else None) or agent.model or self.spec.defaults.model
        temperature = agent.temperature
        if temperature is None:
            temperature = self.spec.defaults.temperature
        # the spec's cap (resolve_model applies `[llm] max_tokens`, else the provider's)
        max_tokens = agent.max_tokens or self.spec.defaults.max_tokens
        # an agent with its own structured_output gets its own client: the method (and what
        # `auto` learns) is kept per model object
        key = f"{name}|{temperature}|{max_tokens}|{agent.structured_output}"
        if key not in self._model_cache:
            from loopengt.providers.registry import resolve_model, with_max_tokens

            model = resolve_model(name, temperature=temperature, config=self.config)
            self._model_cache[key] = with_max_tokens(model, max_tokens)
        return self._model_cache[key]

    def tools_for(self, agent: AgentRole) -> list[BaseTool]:
        if agent.name not in self._tool_cache:
            from loopengt.tools import load_tools

            specs = [t for t in self.spec.tools if t.name in agent.tools]
            tools = load_tools(specs, self.config)
            if agent.memory:
                from loopengt.memory import memory_tools

                tools += memory_tools(self.spec.name, agent.name)
            self._tool_cache[agent.name] = tools
        return self._tool_cache[agent.name]

    def check_models(self) -> None:
        """Resolve every agent's model up front so a missing model fails at compile time."""
        for agent in self.spec.agents:
            try:
                model = self.model_for(agent)
            except UserInputError as exc:
                raise UserInputError(f"agent {agent.name!r}: {exc}") from None
            if agent.has_tools and getattr(model, "tool_calling", True) is False:
                name = getattr(model, "model_name", None) or type(model).__name__
                raise UserInputError(
                    f"agent {agent.name!r} has tools, but its model {name} cannot call tools; "
                    "give it an openai:, anthropic:, ollama: or local model"
                )

    def new_graph(self, *pattern_channels: str) -> Graph:
        """A StateGraph over the channels this spec needs (see `channels`), whose nodes
        all retry per the spec's `policy.retry` (LangGraph's RetryPolicy)."""
        from loopengt.graph.policy import retry_policy

        graph = new_graph(self.channels(*pattern_channels))
        graph.set_node_defaults(retry_policy=retry_policy(self))
        return graph

    def channels(self, *pattern_channels: str) -> frozenset[str]:
        """The state channels this spec's graph needs besides the core ones: its pattern's,
        the gate ones if a step has a gate, ``started_at`` if there is a total time limit."""
        channels = set(pattern_channels)
        if self.spec.policy.gates or any(s.gate for s in self.spec.steps):
            channels.update(GATE_CHANNELS)
        if self.spec.policy.max_total_time_seconds is not None:
            channels.add("started_at")
        return frozenset(channels)

    def max_concurrency(self) -> int:
        """Tasks LangGraph may run at once. Its default thread pool (CPUs + 4) would run
        eight 200 ms branches in two waves on a 2-core machine; model calls wait on I/O, so
        we allow more unless the spec sets a limit."""
        if self.spec.fan_out is not None and self.spec.fan_out.max_concurrency:
            return self.spec.fan_out.max_concurrency
        return DEFAULT_MAX_CONCURRENCY

    def recursion_limit(self) -> int:
        """High enough that our own counters (turns, iterations, gate attempts) always stop
        a loop first, so users see `stopped: max_turns`, never GraphRecursionError."""
        spec, policy = self.spec, self.spec.policy
        pattern_limits = [
            spec.supervisor.max_turns if spec.supervisor else None,
            spec.handoff.max_handoffs if spec.handoff else None,
            2 * spec.evaluator.max_iterations
            if spec.evaluator and spec.evaluator.max_iterations
            else None,
        ]
        turns = max([policy.max_turns or 100, *(n for n in pattern_limits if n)])
        gates = [*policy.gates, *(s.gate for s in spec.steps if s.gate)]
        gate_attempts = max([g.max_attempts for g in gates] + [3])
        return max(100, (turns + len(self.spec.steps) + 2) * (gate_attempts + 2) * 2)


def step_gate(spec: LoopSpec, step: StepSpec) -> Any:
    """The gate guarding a step: its own, else one declared under policy.gates."""
    if step.gate is not None:
        return step.gate
    return next((g for g in spec.policy.gates if g.step == step.name), None)
