"""Designing loops: the architect (a model designs a spec, the validator checks it), the
templates a design can start from or fall back to, and the YAML and document they write."""

from loopengt.design.architect import Design, adesign, architect_prompt, design, write_design
from loopengt.design.templates import Template, closest_template, get_template, list_templates

__all__ = [
    "Design",
    "Template",
    "adesign",
    "architect_prompt",
    "closest_template",
    "design",
    "get_template",
    "list_templates",
    "write_design",
]
