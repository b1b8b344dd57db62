"""The `loopengt` command. Kept light: LangGraph/LangChain load only inside commands that
need them, so `loopengt --help` starts fast."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from loopengt import __version__
from loopengt.cli import (
    design,
    doctor,
    evals,
    graph,
    init,
    mcp,
    run,
    runs,
    schema,
    studio,
    template,
    trace,
    validate,
)
from loopengt.cli.help_format import install as _install_help_format
from loopengt.cli.output import err_console
from loopengt.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED, LoopengtError

_install_help_format()

app = typer.Typer(
    name="loopengt",
    help="Loop engineering: describe an agent loop in YAML, compile it onto LangGraph, run it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loopengt {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    project: str | None = typer.Option(
        None,
        "--project",
        metavar="DIR",
        help="The project folder (default: the nearest folder upwards holding .loopengt/).",
    ),
) -> None:
    if debug:
        os.environ["LOOPENGT_DEBUG"] = "1"
    if project is not None:
        from loopengt.project import PROJECT_ENV

        if not os.path.isdir(project):
            raise typer.BadParameter(f"{project} is not a folder", param_hint="--project")
        os.environ[PROJECT_ENV] = os.path.abspath(project)


for module in (
    validate,
    schema,
    init,
    design,
    template,
    graph,
    run,
    runs,
    trace,
    evals,
    mcp,
    studio,
    doctor,
):
    module.register(app)


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("LOOPENGT_DEBUG") == "1"
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="loopengt", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        if exc.format_message():  # empty when click already printed help for a bare command
            err_console.print(f"[red]error:[/] {exc.format_message()}", highlight=False)
            ctx = getattr(exc, "ctx", None)  # click's usage errors carry their command
            where = ctx.command_path if ctx is not None else "loopengt"
            err_console.print(f"Try '{where} --help'.", style="dim", highlight=False)
        sys.exit(EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", style="yellow")
        sys.exit(EXIT_INTERRUPTED)
    except LoopengtError as exc:
        if debug:
            err_console.print_exception()
        for line in exc.messages():
            err_console.print(line, markup=False)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            err_console.print_exception()
        message = str(exc).splitlines()[0] if str(exc) else ""
        err_console.print(
            f"[red]error:[/] {type(exc).__name__}: {message} (run with --debug for details)",
            highlight=False,
        )
        sys.exit(EXIT_RUN_FAILED)
    sys.exit(code if isinstance(code, int) else 0)
