"""`loopengt eval RUN_ID` and `loopengt eval --dataset CASES [FILE]`: thin over loopengt.evals."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from loopengt.cli.output import console, err_console
from loopengt.errors import EXIT_RUN_FAILED, UserInputError


def eval_(
    target: str | None = typer.Argument(
        None, help="A run id; with --dataset, the LoopSpec file (default: the dataset's spec)."
    ),
    dataset: Path | None = typer.Option(None, "--dataset", "-d", help="A dataset of cases."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="The judge's model."),
    rubric: Path | None = typer.Option(None, "--rubric", help="Criteria file (run eval)."),
    no_judge: bool = typer.Option(False, "--no-judge", help="Metrics only (run eval)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model for every agent."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", help="Cases run at once."),
    replay_dir: Path | None = typer.Option(None, "--replay-dir", help="Cassettes: DIR/CASE.yaml"),
    record_dir: Path | None = typer.Option(None, "--record-dir", help="Record cassettes there."),
    report: Path | None = typer.Option(None, "--report", help="Report JSON path (+ .md)."),
    baseline: Path | None = typer.Option(None, "--baseline", help="Gate against this report."),
    save_baseline: Path | None = typer.Option(None, "--save-baseline", help="Save as baseline."),
    tolerance: float = typer.Option(0.1, "--tolerance", help="Allowed score drop."),
    cost_tolerance: float = typer.Option(0.25, "--cost-tolerance", help="Allowed cost growth."),
    latency_tolerance: float = typer.Option(
        1.0, "--latency-tolerance", help="Allowed latency growth."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Score a run (metrics and an LLM judge), or run a dataset of cases as a regression gate."""
    if dataset is None:
        if target is None:
            raise UserInputError("give a RUN_ID, or --dataset CASES.yaml [FILE]")
        _eval_run(target, judge_model, rubric, no_judge, as_json)
        return
    from loopengt.evals.baseline import Tolerances

    tolerances = Tolerances(tolerance, cost_tolerance, latency_tolerance)
    _eval_dataset(
        dataset,
        target,
        concurrency=concurrency,
        model=model,
        judge_model=judge_model,
        replay_dir=replay_dir,
        record_dir=record_dir,
        report_path=report,
        baseline=baseline,
        save_baseline=save_baseline,
        tolerances=tolerances,
        as_json=as_json,
    )


def _eval_run(
    run_id: str, judge_model: str | None, rubric: Path | None, no_judge: bool, as_json: bool
) -> None:
    from loopengt.evals.run_eval import eval_run

    result = eval_run(run_id, judge_model=judge_model, rubric=rubric, judge=not no_judge)
    if as_json:
        console.out(json.dumps(result.as_dict(), ensure_ascii=False, default=str))
        return
    from loopengt.cli.evals_view import print_eval

    print_eval(result.as_dict())


def _eval_dataset(dataset: Path, spec: str | None, **options: Any) -> None:
    from loopengt.cli.evals_view import CaseProgress, print_report
    from loopengt.evals.baseline import compare, read_baseline
    from loopengt.evals.report import write_report
    from loopengt.evals.suite import run_dataset

    base = read_baseline(options["baseline"]) if options["baseline"] else None  # exit 2 early
    with CaseProgress(quiet=options["as_json"]) as progress:
        report = run_dataset(
            dataset,
            spec,
            concurrency=options["concurrency"],
            model=options["model"],
            judge_model=options["judge_model"],
            replay_dir=options["replay_dir"],
            record_dir=options["record_dir"],
            on_case=progress.done,
            on_start=progress.start,
        )
    data = report.as_dict()
    regressions = compare(data, base, options["tolerances"]) if base is not None else None
    path = options["report_path"] or _default_report(report.spec)
    written = write_report(data, path, regressions, base)
    if options["as_json"]:
        payload = {**data, "report": str(written[0])}
        if regressions is not None:
            payload["regressions"] = [{"case": r.case, "why": r.why} for r in regressions]
        console.out(json.dumps(payload, ensure_ascii=False, default=str))
    else:
        print_report(data, regressions, written)
    failed = bool(regressions) if regressions is not None else bool(report.failed)
    if options["save_baseline"] is not None:
        if report.failed:
            err_console.print(
                f"not saving a baseline: {len(report.failed)} case(s) fail; fix them first",
                markup=False,
            )
            raise typer.Exit(EXIT_RUN_FAILED)
        write_report(data, options["save_baseline"])
        err_console.print(f"baseline saved: {options['save_baseline']}", markup=False)
    if failed:
        raise typer.Exit(EXIT_RUN_FAILED)


def _default_report(spec: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    from loopengt.project import STATE_DIR, find_project

    return find_project() / STATE_DIR / "evals" / f"{Path(spec).stem}-{stamp}.json"


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
