"""The LLM judge: one implementation for the `llm_judge` gate and for `loopengt eval`.

It keeps the call and result shape of openevals' ``create_llm_as_judge``: it is given
``inputs``, ``outputs`` and optionally ``reference_outputs``, and returns
``{"key", "score", "comment"}`` — a boolean score for a pass/fail question (a gate), a number
from 0 to 1 when ``continuous`` (an eval criterion). The model answers with structured output,
its reasoning first and the score last, so the score follows from the reasoning; a reply that
is not valid JSON for the schema is repaired a bounded number of times by `structured_call`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from loopengt.graph.calls import Calls, Work
from loopengt.graph.structured import structured_call
from loopengt.serialization import as_text

REASONING = {"type": "string", "maxLength": 600, "description": "Why, before the score."}
BINARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reasoning": REASONING, "score": {"type": "boolean"}},
    "required": ["reasoning", "score"],
}
CONTINUOUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reasoning": REASONING, "score": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["reasoning", "score"],
}

SYSTEM = (
    "You are a strict, fair judge. Judge only against the criterion you are given, using the "
    "inputs, the outputs and, when given, the reference outputs. Think it through in "
    "'reasoning' first, citing what in the outputs meets or misses the criterion; then give "
    "the score."
)
BINARY_SCALE = "Score true if the outputs meet the criterion, false if they do not."
CONTINUOUS_SCALE = (
    "Score from 0 to 1: 1 fully meets the criterion, 0.5 meets it in part, 0 misses it."
)


@dataclass(frozen=True)
class Judgement:
    """One criterion judged: openevals' ``{key, score, comment}``."""

    key: str
    score: bool | float
    comment: str

    @property
    def passed(self) -> bool:
        return bool(self.score) if isinstance(self.score, bool) else self.score >= 0.5

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "score": self.score, "comment": self.comment}


def mean_score(judgements: list[Judgement]) -> float | None:
    """The mean score (a boolean counts 0 or 1), None with no judgements."""
    if not judgements:
        return None
    return round(sum(float(j.score) for j in judgements) / len(judgements), 4)


def judge_messages(
    criterion: str,
    inputs: Any,
    outputs: Any,
    reference_outputs: Any = None,
    *,
    continuous: bool,
) -> list[BaseMessage]:
    parts = [
        f"Criterion: {criterion}",
        CONTINUOUS_SCALE if continuous else BINARY_SCALE,
        f"<inputs>\n{_show(inputs)}\n</inputs>",
        f"<outputs>\n{_show(outputs)}\n</outputs>",
    ]
    if reference_outputs is not None:
        parts.append(f"<reference_outputs>\n{_show(reference_outputs)}\n</reference_outputs>")
    return [SystemMessage(SYSTEM), HumanMessage("\n\n".join(parts))]


def judge(
    calls: Calls,
    model: BaseChatModel,
    *,
    key: str,
    criterion: str,
    inputs: Any,
    outputs: Any,
    reference_outputs: Any = None,
    continuous: bool = False,
) -> Work[Judgement]:
    """Judge ``outputs`` against ``criterion``: a generator of the judge's model calls (see
    `loopengt.graph.calls`), run by a graph node's driver or by `adrive` in an eval."""
    schema = CONTINUOUS_SCHEMA if continuous else BINARY_SCHEMA
    messages = judge_messages(criterion, inputs, outputs, reference_outputs, continuous=continuous)
    value = yield from structured_call(calls, model, messages, schema, what=f"{key} judge")
    score = value["score"]
    score = bool(score) if not continuous else round(float(score), 4)
    return Judgement(key, score, " ".join(str(value.get("reasoning", "")).split()))


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return as_text(value)
