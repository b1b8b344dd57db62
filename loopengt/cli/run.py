"""`loopengt run`, `resume`, `approve`, `reject`: thin over loopengt.runs.engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from loopengt.cli.output import console, err_console
from loopengt.errors import UserInputError

CHECKPOINTER_HELP = "SQLite file or postgresql:// URL (default: .loopengt/loopengt.db)."


def parse_inputs(pairs: list[str], input_file: str | None) -> dict[str, Any]:
    """`--input-file` (JSON or YAML mapping) overlaid by `--input KEY=VALUE` pairs; a value
    that parses as JSON (numbers, lists, true) is taken as such, else as text."""
    inputs: dict[str, Any] = {}
    if input_file:
        inputs.update(_read_input_file(Path(input_file)))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--input {pair!r}: expected KEY=VALUE")
        try:
            inputs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            inputs[key.strip()] = value
    return inputs


def _read_input_file(path: Path) -> dict[str, Any]:
    """Read like a spec (size limit, UTF-8, safe YAML without alias bombs, one-line errors
    with the position): an input file is as untrusted as a spec."""
    from loopengt.spec import SpecError
    from loopengt.spec.loader import read_spec_file
    from loopengt.spec.yaml_source import YamlLoadError, load_yaml

    try:
        data, _ = load_yaml(read_spec_file(path))
    except SpecError as exc:
        raise UserInputError(f"--input-file {exc.lines()[0]}") from None
    except YamlLoadError as exc:
        raise UserInputError(f"--input-file {exc.problem.format(str(path))}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"--input-file {path}: expected a mapping of input names to values")
    return data


def run(
    file: str = typer.Argument(..., help="LoopSpec YAML file."),
    input: list[str] = typer.Option([], "--input", "-i", help="Run input KEY=VALUE (repeatable)."),
    input_file: str | None = typer.Option(None, "--input-file", help="JSON/YAML file of inputs."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model for every agent."),
    run_id: str | None = typer.Option(None, "--run-id", help="Run id (default: generated)."),
    checkpointer: str | None = typer.Option(None, "--checkpointer", help=CHECKPOINTER_HELP),
    record: str | None = typer.Option(None, "--record", help="Save model calls to a cassette."),
    replay: str | None = typer.Option(None, "--replay", help="Answer model calls from a cassette."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run a loop, checkpointing every step so it can be resumed."""
    from loopengt.runs.engine import RunOptions, start_run

    if record and replay:
        raise UserInputError("--record and --replay cannot be used together")
    inputs = parse_inputs(input, input_file)
    options = RunOptions(model=model, record=record, replay=replay, checkpointer=checkpointer)
    _show(
        lambda sink, stream: start_run(
            file, inputs=inputs, run_id=run_id, options=options, on_event=sink, stream_text=stream
        ),
        as_json,
    )


def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    checkpointer: str | None = typer.Option(None, "--checkpointer", help=CHECKPOINTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Continue an interrupted, killed or failed run from its last checkpoint."""
    from loopengt.runs.engine import resume_run

    _show(
        lambda sink, stream: resume_run(
            run_id, checkpointer=checkpointer, on_event=sink, stream_text=stream
        ),
        as_json,
    )


def approve(
    run_id: str | None = typer.Argument(
        None, help="The run waiting for approval (none: list every approval waiting)."
    ),
    interrupt: str | None = typer.Option(
        None, "--interrupt", "-I", help="Which approval, when several wait (an id, or its start)."
    ),
    comment: str = typer.Option("", "--comment", "-c", help="A note kept with the answer."),
    checkpointer: str | None = typer.Option(None, "--checkpointer", help=CHECKPOINTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Approve the step a run is waiting on and continue the run; with no run, list the
    approvals waiting."""
    _answer(run_id, interrupt, True, comment, checkpointer, as_json)


def reject(
    run_id: str | None = typer.Argument(
        None, help="The run waiting for approval (none: list every approval waiting)."
    ),
    interrupt: str | None = typer.Option(
        None, "--interrupt", "-I", help="Which approval, when several wait (an id, or its start)."
    ),
    comment: str = typer.Option("", "--comment", "-c", help="Why it was rejected."),
    checkpointer: str | None = typer.Option(None, "--checkpointer", help=CHECKPOINTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Reject the step a run is waiting on; the run ends as rejected. With no run, list the
    approvals waiting."""
    _answer(run_id, interrupt, False, comment, checkpointer, as_json)


def _answer(
    run_id: str | None,
    interrupt: str | None,
    approved: bool,
    comment: str,
    checkpointer: str | None,
    as_json: bool,
) -> None:
    from loopengt.runs.engine import answer_approval

    if run_id is None:
        if interrupt is not None:
            raise UserInputError("--interrupt needs the run it belongs to: RUN_ID --interrupt ID")
        _list_waiting(checkpointer, as_json)
        return
    _show(
        lambda sink, stream: answer_approval(
            run_id,
            approved=approved,
            comment=comment,
            interrupt=interrupt,
            checkpointer=checkpointer,
            on_event=sink,
            stream_text=stream,
        ),
        as_json,
    )


def _list_waiting(checkpointer: str | None, as_json: bool) -> None:
    from loopengt.runs.engine import pending_approvals

    waiting = pending_approvals(checkpointer=checkpointer)
    if as_json:
        console.out(json.dumps(waiting, ensure_ascii=False))
        return
    if not waiting:
        console.print("no run is waiting for approval", markup=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("run id", "interrupt", "step", "message"):
        table.add_column(column, no_wrap=column != "message")
    for item in waiting:
        table.add_row(item["run_id"], item["interrupt"], item["step"] or "", item["message"] or "")
    # piped output is not cut to 80 columns: the ids must stay copyable
    out = console if console.is_terminal else Console(width=200, highlight=False)
    out.print(table)
    err_console.print(
        "answer: loopengt approve|reject RUN_ID [--interrupt ID] [--comment TEXT]",
        markup=False,
        highlight=False,
    )


def _show(start: Any, as_json: bool) -> None:
    from loopengt.cli.progress import RunProgress

    with RunProgress() as progress:
        result = start(progress, progress.live_mode)
    if as_json:
        console.out(json.dumps(_result_json(result), ensure_ascii=False, default=str))
    else:
        _summary(result)
    raise typer.Exit(result.exit_code)


def _result_json(result: Any) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "status": result.status,
        "stop_reason": result.stop_reason,
        "outputs": result.outputs,
        "usage": result.usage,
        "trace_path": result.trace_path,
        "pending_approval": result.pending,
        "duration_s": round(result.duration_s, 3),
    }


def preview(output: Any, limit: int = 500) -> str:
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_run_head(run_id: str, status: str, stop_reason: str | None) -> None:
    from loopengt.tracing.render import status_text

    console.print(f"[bold]run[/] {run_id}  {status_text(status)}", highlight=False)
    if stop_reason:
        console.print(f"stop reason: {stop_reason}", markup=False)


def print_outputs(outputs: dict[str, Any]) -> None:
    for step, output in outputs.items():
        console.print(f"[bold]{step}[/]: ", end="", highlight=False)
        console.print(preview(output), markup=False)


def _summary(result: Any) -> None:
    print_run_head(result.run_id, result.status, result.stop_reason)
    print_outputs(result.outputs)
    usage = result.usage
    console.print(
        f"tokens: {int(usage.get('total_tokens', 0))} "
        f"(in {int(usage.get('input_tokens', 0))}, out {int(usage.get('output_tokens', 0))})"
        f" · cost: ${usage.get('cost_usd', 0.0):.4f} · {result.duration_s:.1f}s",
        highlight=False,
    )
    console.print(f"trace: {result.trace_path}  (`loopengt trace {result.run_id}`)", markup=False)
    if result.pending is not None:
        message = result.pending.get("message") or "approval needed"
        err_console.print(f"[yellow]waiting for approval:[/] {message}", highlight=False)
        err_console.print(
            f"approve: loopengt approve {result.run_id} [--comment TEXT]\n"
            f"reject:  loopengt reject {result.run_id} [--comment TEXT]",
            markup=False,
        )
    elif result.status == "failed" and not result.bad_input:
        err_console.print(f"retry the failed step: loopengt resume {result.run_id}", markup=False)


def register(app: typer.Typer) -> None:
    for command in (run, resume, approve, reject):
        app.command()(command)
