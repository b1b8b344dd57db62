"""The LoopSpec: models, safe loading with source positions, and validation."""

from loopengt.spec.errors import Problem, SpecError
from loopengt.spec.loader import (
    ValidationResult,
    check_spec,
    load_spec,
    load_spec_text,
    validate_files,
)
from loopengt.spec.models import AgentRole, LoopSpec, Policy, StepSpec, ToolSpec

__all__ = [
    "AgentRole",
    "LoopSpec",
    "Policy",
    "Problem",
    "SpecError",
    "StepSpec",
    "ToolSpec",
    "ValidationResult",
    "check_spec",
    "load_spec",
    "load_spec_text",
    "validate_files",
]
