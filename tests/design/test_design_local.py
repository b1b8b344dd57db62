"""`design` on the embedded local model: whatever the model manages, five everyday goals each
end in a valid loop.yaml — the model's own design after repair, or the closest template."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopengt.design import design
from loopengt.providers.local import local_model_available
from loopengt.spec import load_spec_text

GOALS = {
    "code review": "Review a pull request and write clear, actionable code review comments.",
    "research report": "Research a topic from several angles and write a short report.",
    "data cleaning": "Clean a messy CSV of customer records: dedupe, fix dates and emails.",
    "bug triage": "Triage incoming bug reports and route each to the right team.",
    "blog post": "Write a blog post announcing our new release, then polish it.",
}


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="the local model is not installed")
@pytest.mark.parametrize("kind", sorted(GOALS))
def test_design_on_the_local_model_always_yields_a_valid_spec(kind: str, tmp_path: Path) -> None:
    lines: list[str] = []
    result = design(GOALS[kind], model="local", attempts=2, root=tmp_path, on_progress=lines.append)
    spec = load_spec_text(result.yaml, filename="loop.yaml")  # raises if not valid
    assert spec == result.spec and result.attempts >= 1
    own = "model's own design" if result.fallback is None else f"fell back to {result.template}"
    print(f"\n{kind}: {own} after {result.attempts} attempt(s); {lines[-1]}")
    if result.fallback is not None:
        assert "**Fallback:**" in result.doc and result.template in result.doc
        assert spec.goal == GOALS[kind]
