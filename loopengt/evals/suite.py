"""`run_dataset`: the loop run on every case of a dataset, scored, in one report.

Cases run concurrently on one event loop through the async run engine (at most
``concurrency`` at once), each a real, checkpointed run that `loopengt runs` lists with its
score. A case answered from ``replay_dir`` needs no model: `DIR/<case id>.yaml` is its
cassette (``record_dir`` writes them). Everything that can be checked before a run starts —
the spec, each case's inputs, the cassettes — is, so bad input is exit 2 with nothing run.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopengt.config import Config
from loopengt.errors import LoopengtError, UserInputError
from loopengt.evals.dataset import Case, Check, Dataset, check_case, load_dataset
from loopengt.evals.judge import Judgement, mean_score
from loopengt.evals.run_eval import Criterion, ajudge, judge_failure, judge_model_name
from loopengt.spec import LoopSpec, load_spec

CaseDone = Callable[["CaseResult"], None]


@dataclass
class CaseResult:
    id: str
    run_id: str | None = None
    status: str = "error"
    stop_reason: str | None = None
    checks: list[Check] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)
    judge_error: str | None = None
    error: str | None = None
    """The case could not run (not the run failing: that is its status)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        """The mean of the judgements' scores (None: not judged)."""
        return mean_score(self.judgements)

    @property
    def passed(self) -> bool:
        return (
            self.error is None and self.judge_error is None and all(c.passed for c in self.checks)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "passed": self.passed,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "score": self.score,
            "checks": [c.as_dict() for c in self.checks],
            "judgements": [j.as_dict() for j in self.judgements],
            "judge_error": self.judge_error,
            "error": self.error,
            "metrics": self.metrics,
            "outputs": self.outputs,
        }


@dataclass
class Report:
    spec: str
    dataset: str
    cases: list[CaseResult]
    judge_model: str | None = None
    created_at: float = field(default_factory=time.time)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def summary(self) -> dict[str, Any]:
        scores = [c.score for c in self.cases if c.score is not None]
        latencies = [c.metrics.get("latency_s", 0.0) for c in self.cases if c.metrics]
        return {
            "cases": len(self.cases),
            "passed": len(self.cases) - len(self.failed),
            "failed": len(self.failed),
            "errors": sum(1 for c in self.cases if c.error),
            "mean_score": round(statistics.fmean(scores), 4) if scores else None,
            "cost_usd": round(sum(c.metrics.get("cost_usd", 0.0) for c in self.cases), 6),
            "median_latency_s": round(statistics.median(latencies), 3) if latencies else None,
            "wall_s": round(self.wall_s, 3),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "dataset": self.dataset,
            "judge_model": self.judge_model,
            "created_at": self.created_at,
            "summary": self.summary(),
            "cases": [c.as_dict() for c in self.cases],
        }


def run_dataset(dataset: Path | str, spec: Path | str | None = None, **kwargs: Any) -> Report:
    """`arun_dataset` for synchronous callers."""
    return asyncio.run(arun_dataset(dataset, spec, **kwargs))


async def arun_dataset(
    dataset_path: Path | str,
    spec_path: Path | str | None = None,
    *,
    concurrency: int = 4,
    model: str | None = None,
    judge_model: str | None = None,
    replay_dir: Path | str | None = None,
    record_dir: Path | str | None = None,
    root: Path | str | None = None,
    config: Config | None = None,
    on_case: CaseDone | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Report:
    """Run the spec (``spec_path``, else the dataset's ``spec:``) on every case; score each
    by its expectations and, when a judge model is named (here, in the dataset or in the
    spec's ``evals``), by the judge."""
    from loopengt.providers.registry import resolve_model

    if concurrency < 1:
        raise UserInputError(f"--concurrency {concurrency}: must be at least 1")
    if replay_dir is not None and record_dir is not None:
        raise UserInputError("--replay-dir and --record-dir cannot be used together")
    config = config or Config.load(root)
    dataset = load_dataset(dataset_path)
    spec_file = _spec_file(dataset_path, dataset, spec_path)
    spec = load_spec(spec_file)
    _check_cases(spec, dataset, replay_dir)
    judge_name = judge_model or dataset.judge_model or judge_model_name(spec, None)
    judge = resolve_model(judge_name, temperature=0.0, config=config) if judge_name else None
    criteria = _criteria(spec, dataset)
    evaluators = [load_evaluator(path) for path in dataset.evaluators]

    if on_start is not None:
        on_start(len(dataset.cases))
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one(case: Case) -> CaseResult:
        async with gate:
            result = await _run_case(
                case, spec, spec_file, model, replay_dir, record_dir, config, judge, criteria
            )
            await _evaluate(result, case, evaluators)
            _min_score(result, case)
        if on_case is not None:
            on_case(result)
        return result

    results = list(await asyncio.gather(*(one(case) for case in dataset.cases)))
    report = Report(str(spec_file), str(dataset_path), results, judge_name)
    report.wall_s = time.perf_counter() - started
    await _keep_scores(report, config)
    return report


def _spec_file(dataset_path: Path | str, dataset: Dataset, given: Path | str | None) -> Path:
    if given is not None:
        return Path(given)
    if dataset.spec is None:
        raise UserInputError(f"{dataset_path}: name the LoopSpec file, or set 'spec:' in it")
    return Path(dataset_path).parent / dataset.spec


def _check_cases(spec: LoopSpec, dataset: Dataset, replay_dir: Path | str | None) -> None:
    from loopengt.runs.engine import prepare_inputs

    problems = []
    for case in dataset.cases:
        try:
            prepare_inputs(spec, case.inputs)
        except UserInputError as exc:
            problems += [f"case {case.id!r}: {line}" for line in str(exc).splitlines()]
        if replay_dir is not None and not _cassette(replay_dir, case).is_file():
            problems.append(f"case {case.id!r}: no cassette {_cassette(replay_dir, case)}")
    if problems:
        raise UserInputError("\n".join(problems))


def _cassette(folder: Path | str, case: Case) -> Path:
    return Path(folder) / f"{case.id}.yaml"


def _criteria(spec: LoopSpec, dataset: Dataset) -> list[Criterion]:
    from loopengt.evals.run_eval import criteria_for

    if dataset.rubric:
        spec = spec.model_copy(update={"evals": None, "rubric": dataset.rubric})
    return criteria_for(spec)


async def _run_case(
    case: Case,
    spec: LoopSpec,
    spec_file: Path,
    model: str | None,
    replay_dir: Path | str | None,
    record_dir: Path | str | None,
    config: Config,
    judge: Any,
    criteria: list[Criterion],
) -> CaseResult:
    from loopengt.evals.metrics import run_metrics
    from loopengt.runs.engine import RunOptions, astart_run
    from loopengt.runs.shared_trace import run_trace

    options = RunOptions(
        model=model,
        replay=str(_cassette(replay_dir, case)) if replay_dir is not None else None,
        record=str(_cassette(record_dir, case)) if record_dir is not None else None,
    )
    run_id = f"{_slug(spec.name)}-{case.id}-{secrets.token_hex(3)}"[:128]
    out = CaseResult(case.id, run_id)
    try:
        result = await astart_run(
            spec_file, inputs=case.inputs, run_id=run_id, options=options, config=config
        )
    except LoopengtError as exc:
        out.error = f"could not run: {str(exc).splitlines()[0]}"
        return out
    out.status, out.stop_reason, out.outputs = result.status, result.stop_reason, result.outputs
    trace = await asyncio.to_thread(run_trace, run_id, config)
    metrics = run_metrics(trace, [s.name for s in spec.steps])
    out.metrics = {
        "latency_s": round(metrics.latency_s, 4),
        "cost_usd": metrics.cost_usd,
        "input_tokens": metrics.input_tokens,
        "output_tokens": metrics.output_tokens,
        "steps_completed": metrics.steps_completed,
        "steps_total": metrics.steps_total,
        "turns": metrics.turns,
        "tool_calls": metrics.tool_calls,
        "tool_errors": metrics.tool_errors,
        "retries": metrics.retries,
    }
    out.checks = check_case(case.expect, result.status, result.outputs, metrics)
    if judge is not None:
        try:
            out.judgements = await ajudge(
                judge,
                criteria,
                inputs=case.inputs,
                outputs=result.outputs,
                reference_outputs=case.reference,
            )
        except Exception as exc:  # the judge failing is this case's result, not a crash
            out.judge_error = judge_failure(exc, config)
    return out


def _min_score(result: CaseResult, case: Case) -> None:
    if case.expect.min_score is None or result.error is not None:
        return
    score = result.score
    ok = score is not None and score >= case.expect.min_score
    shown = "not judged" if score is None else f"{score:.2f}"
    result.checks.append(Check("min_score", ok, f"{shown} (expected ≥ {case.expect.min_score})"))


def load_evaluator(path: str) -> Any:
    """An evaluator by import path: any callable taking ``inputs``, ``outputs`` and
    ``reference_outputs`` by keyword and returning ``{key, score, comment}`` (or a list of
    them), sync or async — e.g. one made by openevals' ``create_llm_as_judge``."""
    import importlib

    module, _, attr = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserInputError(f"evaluator {path!r} cannot be imported: {exc}") from None
    if not callable(found):
        raise UserInputError(f"evaluator {path!r} is not callable")
    return found


async def _evaluate(result: CaseResult, case: Case, evaluators: list[Any]) -> None:
    """Each evaluator's results join the case's judgements; a failing one is its judge error."""
    import inspect

    if result.error is not None or not evaluators:
        return
    for evaluator in evaluators:
        name = getattr(evaluator, "__name__", type(evaluator).__name__)
        kwargs = {
            "inputs": case.inputs,
            "outputs": result.outputs,
            "reference_outputs": case.reference,
        }
        try:
            if inspect.iscoroutinefunction(evaluator):
                value = await evaluator(**kwargs)
            else:  # a sync evaluator may call a model: not on the event loop's thread
                value = await asyncio.to_thread(evaluator, **kwargs)
            for item in value if isinstance(value, list) else [value]:
                result.judgements.append(
                    Judgement(str(item["key"]), item["score"], str(item.get("comment") or ""))
                )
        except Exception as exc:
            result.judge_error = f"evaluator {name} failed: {type(exc).__name__}: {exc}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:24] or "run"


async def _keep_scores(report: Report, config: Config) -> None:
    """Each case's result is kept with its run, so `runs` shows the score."""
    from loopengt.runs.storage import aopen_storage

    async with aopen_storage(None, config) as storage:
        for case in report.cases:
            if case.run_id and case.error is None:
                await storage.index.asave_eval(case.run_id, case.score, case.as_dict())
