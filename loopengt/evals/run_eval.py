"""`eval_run(run_id)`: a finished run's metrics and the judge's scores, kept with the run.

The criteria are the spec's goal (always) and its rubric — the ``evals.rubric`` block, else
the top-level ``rubric`` — or a rubric file. Each is judged on its own, 0 to 1 with reasons;
the run's score is their mean. A judge that fails (the model is down, or its reply stays
malformed after repair) is reported as a judge failure beside the metrics, never raised:
the metrics are worth having without it.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.evals.judge import Judgement, mean_score
from loopengt.evals.metrics import RunMetrics, run_metrics
from loopengt.spec import LoopSpec, load_spec_text


@dataclass(frozen=True)
class Criterion:
    key: str
    text: str


@dataclass
class EvalResult:
    """One run scored: metrics, a judgement per criterion, their mean."""

    run_id: str
    metrics: RunMetrics
    judgements: list[Judgement] = field(default_factory=list)
    judge_error: str | None = None
    judge_model: str | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def score(self) -> float | None:
        """The mean of the judgements' scores (None: not judged)."""
        return mean_score(self.judgements)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "score": self.score,
            "judgements": [j.as_dict() for j in self.judgements],
            "judge_error": self.judge_error,
            "judge_model": self.judge_model,
            "metrics": self.metrics.as_dict(),
            "created_at": self.created_at,
        }


def criteria_for(spec: LoopSpec, rubric_file: Path | str | None = None) -> list[Criterion]:
    """The goal, then the rubric file's criteria or the spec's."""
    goal = Criterion("goal", f"The outputs achieve the goal: {spec.goal}")
    if rubric_file is not None:
        texts = read_rubric(Path(rubric_file))
    else:
        texts = list(spec.evals.rubric if spec.evals and spec.evals.rubric else spec.rubric)
    return [goal] + [Criterion(_key(text, i), text) for i, text in enumerate(texts, start=1)]


def read_rubric(path: Path) -> list[str]:
    """A rubric file: a YAML list of criteria, or plain text with one per line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"--rubric {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, list) and all(isinstance(item, str) for item in data):
        items = data
    else:
        items = [line.strip(" -*\t") for line in text.splitlines()]
        items = [line for line in items if line and not line.startswith("#")]
    if not items:
        raise UserInputError(f"--rubric {path}: no criteria (one per line, or a YAML list)")
    return [str(item).strip() for item in items]


def _key(text: str, number: int) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:4]
    return "_".join(words) or f"criterion_{number}"


async def ajudge(
    model: Any,
    criteria: list[Criterion],
    *,
    inputs: Any,
    outputs: Any,
    reference_outputs: Any = None,
) -> list[Judgement]:
    """Judge ``outputs`` on each criterion (concurrently); raises what the judge raised."""
    from loopengt.evals.judge import judge
    from loopengt.graph.calls import Calls, adrive

    async def one(criterion: Criterion) -> Judgement:
        work = judge(
            Calls(None),
            model,
            key=criterion.key,
            criterion=criterion.text,
            inputs=inputs,
            outputs=outputs,
            reference_outputs=reference_outputs,
            continuous=True,
        )
        return await adrive(work, {})

    return list(await asyncio.gather(*(one(c) for c in criteria)))


def judge_failure(exc: Exception, config: Config) -> str:
    from loopengt.providers.errors import explain_model_error

    return f"judge failed: {explain_model_error(exc, config)}"


def judge_model_name(spec: LoopSpec, explicit: str | None) -> str | None:
    return explicit or (spec.evals.judge_model if spec.evals else None)


async def aeval_run(
    run_id: str,
    *,
    judge_model: str | None = None,
    rubric: Path | str | None = None,
    judge: bool = True,
    checkpointer: str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
) -> EvalResult:
    """Score run ``run_id`` and keep the result with it (`runs` shows the score)."""
    from loopengt.providers.registry import resolve_model
    from loopengt.runs.engine import check_run_id, run_record
    from loopengt.runs.shared_trace import run_trace
    from loopengt.runs.storage import aopen_storage

    config = config or Config.load(root)
    check_run_id(run_id)
    # looked up first: an eval of an unknown run creates no database
    if (
        await asyncio.to_thread(run_record, run_id, checkpointer=checkpointer, config=config)
        is None
    ):
        raise UserInputError(f"no run {run_id!r} (see `loopengt runs`)")
    async with aopen_storage(checkpointer, config) as storage:
        record = await storage.index.aget(run_id)
        if record is None:
            raise UserInputError(f"no run {run_id!r} in {storage.url} (see `loopengt runs`)")
        spec = load_spec_text(record.spec_text, filename=record.spec_path)
        trace = run_trace(run_id, config, checkpointer)
        criteria = criteria_for(spec, rubric)  # a bad rubric file fails before any call
        result = EvalResult(run_id, run_metrics(trace, [s.name for s in spec.steps]))
        if judge:
            name = judge_model_name(spec, judge_model)
            model = resolve_model(name, temperature=0.0, config=config)  # bad name: exit 2
            result.judge_model = name or "default"
            inputs = record.options.get("inputs") or {}
            try:
                result.judgements = await ajudge(
                    model, criteria, inputs=inputs, outputs=trace.get("outputs") or {}
                )
            except Exception as exc:  # a judge failure is a result, not a crash
                result.judge_error = judge_failure(exc, config)
        await storage.index.asave_eval(run_id, result.score, result.as_dict())
    return result


def eval_run(run_id: str, **kwargs: Any) -> EvalResult:
    """`aeval_run` for synchronous callers."""
    return asyncio.run(aeval_run(run_id, **kwargs))
