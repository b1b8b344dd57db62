"""The typed results of the MCP tools: FastMCP turns each into an `outputSchema` and the
call's `structuredContent`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    line: int
    column: int
    path: str = Field(description="The field, e.g. steps[1].agent ('' for the whole file).")
    message: str
    text: str = Field(description="The problem as the CLI prints it: FILE:LINE:COL: ...")


class Validation(BaseModel):
    ok: bool
    name: str | None = None
    pattern: str | None = None
    problems: list[Problem] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list,
        description="FILE:LINE:COL lines for what validates but is likely a mistake.",
    )


class Designed(BaseModel):
    spec_yaml: str
    design_doc: str
    pattern: str
    fallback: str | None = Field(description="Why a template was used (None: the model's own).")
    template: str | None
    attempts: int


class Started(BaseModel):
    run_id: str
    status: str


class RunInfo(BaseModel):
    run_id: str
    spec: str
    status: str
    current_step: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    stop_reason: str | None = None
    steps_completed: int = 0
    turns: int = 0
    error: str | None = None
    pending_approval: dict[str, Any] | None = None
    started_at: float | None = None
    ended_at: float | None = None


class RunRow(BaseModel):
    run_id: str
    spec: str
    status: str
    steps: int
    tokens: int
    cost_usd: float
    score: float | None
    started_at: float


class RunList(BaseModel):
    runs: list[RunRow]


class TraceText(BaseModel):
    run_id: str
    format: str
    text: str


class TemplateRow(BaseModel):
    name: str
    pattern: str | None
    purpose: str | None
    source: str
    problem: str | None


class TemplateList(BaseModel):
    templates: list[TemplateRow]
