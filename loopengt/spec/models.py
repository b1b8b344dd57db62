"""The LoopSpec: pydantic models for one YAML loop file.

Models only check shape and local constraints; cross references (step -> agent, depends_on,
pattern blocks ...) are checked in :mod:`loopengt.spec.checks` so every problem is reported
at once with its source position.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PatternName = Literal[
    "sequential",
    "supervisor_worker",
    "parallel_fan_out",
    "handoff",
    "evaluator_optimizer",
    "custom",
]

Name = str  # agent, step and tool names: a plain identifier-like string, checked in checks.py


def is_import_path(value: str) -> bool:
    """``module.sub:attr.attr``: what ``importlib.import_module`` and ``getattr`` can take
    (an empty or relative module name would raise ValueError or TypeError, not ImportError)."""
    module, sep, attr = value.partition(":")
    return bool(sep) and all(part.isidentifier() for part in [*module.split("."), *attr.split(".")])


def check_verifier(value: str | None) -> None:
    if value is not None and ":" in value and not is_import_path(value):
        raise ValueError(
            f"verifier must be a plugin name or 'module:attr' (dotted Python names), got {value!r}"
        )


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(StrictModel):
    """One declared run input; prompts refer to it as ``{{input.NAME}}``."""

    description: str = ""
    required: bool = True
    default: Any = None


class ToolSpec(StrictModel):
    name: Name
    kind: Literal["function", "mcp", "builtin"]
    description: str = ""
    # kind: function
    function: str | None = Field(
        default=None, description="Import path 'module:attr' of a callable or LangChain tool."
    )
    # kind: mcp (stdio: command/args/env; streamable HTTP: url)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    include: list[str] | None = Field(
        default=None, description="Only these tools of the MCP server (default: all)."
    )
    # kind: builtin
    builtin: Literal["read_file", "list_dir", "http_get"] | None = Field(
        default=None, description="Which builtin tool; defaults to the tool's name."
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> ToolSpec:
        if self.kind == "function" and not self.function:
            raise ValueError("a function tool needs 'function: module:attr'")
        if self.kind == "function" and self.function and not is_import_path(self.function):
            raise ValueError(
                f"function must be 'module:attr' (dotted Python names), got {self.function!r}"
            )
        if self.kind == "mcp" and not (self.command or self.url):
            raise ValueError("an mcp tool needs 'command' (stdio) or 'url' (streamable HTTP)")
        if self.kind == "mcp" and self.command and self.url:
            raise ValueError("an mcp tool takes 'command' or 'url', not both")
        if self.kind == "builtin" and self.builtin is None:
            if self.name not in ("read_file", "list_dir", "http_get"):
                raise ValueError(
                    f"unknown builtin tool {self.name!r}; builtins are read_file, list_dir, "
                    "http_get (set 'builtin:' to name one under another tool name)"
                )
            self.builtin = self.name  # type: ignore[assignment]  # checked against the Literal just above
        return self


class AgentRole(StrictModel):
    name: Name
    description: str = ""
    instructions: str | None = Field(default=None, description="The agent's system prompt.")
    capabilities: list[str] = Field(default_factory=list)
    model: str | None = Field(default=None, description="'provider:model', e.g. 'openai:gpt-4o'.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    tools: list[Name] = Field(default_factory=list)
    handoffs: list[Name] | None = Field(
        default=None,
        description="handoff pattern: agents this agent may hand off to; [] for none (it "
        "answers). Unset: the agents of the steps right after its own, else every other agent.",
    )
    max_tool_calls: int = Field(default=8, ge=0, description="Tool-calling rounds per step.")
    memory: bool = Field(
        default=False,
        description="Long-term memory across runs: the tools remember, recall and forget "
        "over this agent's own namespace in the project's store.",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Cap on each reply's output tokens (default: defaults)."
    )
    structured_output: (
        Literal["auto", "json_schema", "json_object", "function_calling", "prompt"] | None
    ) = Field(
        default=None,
        description="How this agent's JSON replies are asked for (default: `[llm] "
        "structured_output`, else auto): a server that refuses one method, a model that "
        "follows a forced tool call better than a schema.",
    )

    @property
    def has_tools(self) -> bool:
        """It calls tools: its own, or memory's (its turns run the tool loop)."""
        return bool(self.tools) or self.memory


class GateSpec(StrictModel):
    """A verification gate run on a step's output."""

    kind: Literal["regex", "json_schema", "llm_judge", "verifier"]
    pattern: str | None = Field(default=None, description="regex: must match the output.")
    json_schema: dict[str, Any] | None = Field(
        default=None, alias="schema", description="json_schema: the output must validate."
    )
    criteria: str | None = Field(default=None, description="llm_judge: what a pass means.")
    judge: Name | None = Field(default=None, description="llm_judge: the judging agent.")
    verifier: str | None = Field(
        default=None, description="verifier: plugin name or 'module:attr' of a verifier."
    )
    on_fail: Literal["retry", "stop"] = "retry"
    max_attempts: int = Field(default=3, ge=1, description="Attempts before the run stops.")

    @model_validator(mode="after")
    def _kind_fields(self) -> GateSpec:
        needed = {
            "regex": "pattern",
            "json_schema": "json_schema",
            "llm_judge": "criteria",
            "verifier": "verifier",
        }[self.kind]
        if getattr(self, needed) is None:
            field = "schema" if needed == "json_schema" else needed
            raise ValueError(f"a {self.kind} gate needs '{field}'")
        check_verifier(self.verifier)
        return self


class StepGateSpec(GateSpec):
    """A gate declared under ``policy.gates``: names the step it guards."""

    step: Name


class SeedDependency(StrictModel):
    """seed-0.1.0 form of a dependency: ``dependencies: [{step_name: X}]``."""

    step_name: Name


class StepSpec(StrictModel):
    name: Name
    agent: Name | None = Field(
        default=None, description="The agent that runs the step (optional with one agent)."
    )
    description: str = ""
    prompt: str | None = Field(
        default=None, description="Template: {{input.KEY}}, {{steps.NAME}}, {{goal}} ..."
    )
    depends_on: list[Name] = Field(default_factory=list)
    dependencies: list[SeedDependency] = Field(
        default_factory=list, description="seed-0.1.0 spelling of depends_on."
    )
    output_schema: dict[str, Any] | None = None
    gate: GateSpec | None = None
    model: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    map_over: str | None = Field(
        default=None,
        description="parallel_fan_out: run once per element of this input list ('input.KEY').",
    )

    @property
    def requires(self) -> list[str]:
        """All dependencies, in declaration order, whichever spelling declared them."""
        names = list(self.depends_on)
        names += [d.step_name for d in self.dependencies if d.step_name not in names]
        return names


class RetrySpec(StrictModel):
    attempts: int = Field(default=2, ge=1, description="Total attempts of a failing step.")
    backoff_seconds: float = Field(default=1.0, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    max_backoff_seconds: float = Field(default=30.0, ge=0)


class StopCondition(StrictModel):
    """Stop the run once a step's output contains/matches a text."""

    step: Name | None = Field(default=None, description="Only this step's output (default any).")
    contains: str | None = None
    matches: str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _one_test(self) -> StopCondition:
        if (self.contains is None) == (self.matches is None):
            raise ValueError("a stop condition needs exactly one of 'contains' or 'matches'")
        return self


class ApprovalSpec(StrictModel):
    step: Name
    message: str | None = None


class BudgetSpec(StrictModel):
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)


class Policy(StrictModel):
    max_turns: int | None = Field(default=None, ge=1)
    max_total_time_seconds: float | None = Field(default=None, gt=0)
    step_timeout_seconds: float | None = Field(default=None, gt=0)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    gates: list[StepGateSpec] = Field(default_factory=list)
    stop_conditions: list[StopCondition] = Field(default_factory=list)
    approvals: list[ApprovalSpec] = Field(default_factory=list)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    context_budget: int | None = Field(
        default=None,
        ge=32,
        description="Tokens every model call's messages must fit in: older turns are "
        "trimmed (or summarized) first; the system prompt and the newest message are kept.",
    )
    context_mode: Literal["trim", "summarize"] = Field(
        default="trim",
        description="How turns that do not fit the context budget go: dropped (trim), or "
        "condensed into one message by the agent's model (summarize: one extra call).",
    )

    @model_validator(mode="before")
    @classmethod
    def _approval_shorthand(cls, data: Any) -> Any:
        # `approvals: [deploy]` is the common case; expand it to the full form.
        if isinstance(data, dict) and isinstance(data.get("approvals"), list):
            data = dict(data)
            data["approvals"] = [
                {"step": a} if isinstance(a, str) else a for a in data["approvals"]
            ]
        return data


class SupervisorSpec(StrictModel):
    agent: Name = Field(description="The routing agent.")
    workers: list[Name] = Field(default_factory=list, description="Worker agents (default: rest).")
    max_turns: int | None = Field(default=None, ge=1)


class EvaluatorSpec(StrictModel):
    generator: Name = Field(description="The step that produces the candidate.")
    evaluator: Name = Field(description="The step that judges it (structured verdict).")
    max_iterations: int | None = Field(default=None, ge=1)
    pass_score: float | None = Field(
        default=None, description="Also pass when the verdict's score reaches this."
    )


class FanOutSpec(StrictModel):
    branches: list[Name] = Field(default_factory=list, description="Steps run in parallel.")
    map_step: Name | None = Field(default=None, description="Step run once per list element.")
    map_over: str | None = Field(default=None, description="'input.KEY' holding the list.")
    aggregator: Name | None = Field(default=None, description="Step that joins the results.")
    max_concurrency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _map_pair(self) -> FanOutSpec:
        if (self.map_step is None) != (self.map_over is None):
            raise ValueError("'map_step' and 'map_over' go together")
        return self


class HandoffSpec(StrictModel):
    entry: Name = Field(description="The agent that starts.")
    max_handoffs: int | None = Field(default=None, ge=1)
    share_history: bool = Field(
        default=False, description="Give the receiving agent the whole history."
    )


class Condition(StrictModel):
    """A test on state for a custom conditional edge; exactly one kind is set."""

    output_contains: str | None = None
    step: Name | None = Field(default=None, description="Whose output (default: the source).")
    verdict: Literal["pass", "fail"] | None = None
    counter: str | None = Field(
        default=None, description="'turns' or 'visits.STEP' compared with op/value."
    )
    op: Literal["<", "<=", "==", "!=", ">=", ">"] = "<"
    value: int = 0
    verifier: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [self.output_contains, self.verdict, self.counter, self.verifier]
        if sum(k is not None for k in kinds) != 1:
            raise ValueError(
                "a condition needs exactly one of output_contains, verdict, counter, verifier"
            )
        check_verifier(self.verifier)
        return self


class BranchSpec(StrictModel):
    when: Condition
    to: Name


class EdgeSpec(StrictModel):
    source: Name = Field(alias="from")
    to: Name | None = None
    branches: list[BranchSpec] = Field(default_factory=list)
    default: Name | None = Field(default=None, description="Target when no branch matches.")

    @model_validator(mode="after")
    def _plain_or_conditional(self) -> EdgeSpec:
        if (self.to is None) == (not self.branches):
            raise ValueError("an edge needs either 'to' or 'branches'")
        return self


class CustomGraphSpec(StrictModel):
    entry: Name = Field(description="The first node (a step name).")
    edges: list[EdgeSpec] = Field(default_factory=list)


class DefaultsSpec(StrictModel):
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(
        default=None, ge=1, description="Cap on each reply's output tokens (default: [llm])."
    )


class EvalsSpec(StrictModel):
    """How `loopengt eval` scores runs of this loop."""

    rubric: list[str] = Field(
        default_factory=list,
        description="Criteria the judge scores 0 to 1, besides the goal (default: 'rubric').",
    )
    judge_model: str | None = Field(
        default=None, description="'provider:model' of the judge (default: the configured)."
    )


class LoopSpec(StrictModel):
    version: str = "1.0"
    name: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    description: str = ""
    pattern: PatternName = "sequential"
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    agents: list[AgentRole] = Field(min_length=1)
    tools: list[ToolSpec] = Field(default_factory=list)
    steps: list[StepSpec]
    policy: Policy = Field(default_factory=Policy)
    supervisor: SupervisorSpec | None = None
    evaluator: EvaluatorSpec | None = None
    fan_out: FanOutSpec | None = None
    handoff: HandoffSpec | None = None
    graph: CustomGraphSpec | None = None
    rubric: list[str] = Field(default_factory=list, description="What a good run achieves.")
    evals: EvalsSpec | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _numeric_version(cls, data: Any) -> Any:
        # `version: 1.0` in YAML is a float; accept it as the string it was meant to be.
        if isinstance(data, dict) and isinstance(data.get("version"), int | float):
            data = dict(data)
            data["version"] = str(data["version"])
        return data

    def agent(self, name: str) -> AgentRole:
        return next(a for a in self.agents if a.name == name)

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)
