"""The `v2vz` command: every command group registered in one place, in the order `v2vz --help` lists them.

Nothing here imports torch: only `edit --local`, `serve` and `sample-clip` load the engine, inside the command.
`timeline` imports OpenTimelineIO (the optional `timeline` extra) inside the command too.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from v2vz import __version__
from v2vz.api.errors import EXIT_INTERRUPTED, EXIT_USER
from v2vz.api.runtime_env import prepare_environment
from v2vz.cli import edit, final, jobs, logs, models, plugins, sample, serve, status, timeline, watch
from v2vz.cli.output import fail

# First, before any command can load torch: OpenMP reads its wait policy once, when it loads (runtime_env.py)
prepare_environment()


def _flags_show_no_type(command: Any) -> None:
    """An empty metavar on every flag of `command` and of the commands below it, `--help` included (see `Commands`).

    `--help` is made by click on first use and kept (`get_help_option` caches it), so it is made here, once."""
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_show_no_type(sub)


class Commands(TyperGroup):
    """The `v2vz` group, through typer's documented `cls=` hook: typer 0.29 prints `<bool>` beside a flag in --help,
    as if it took a value, unless the flag has a metavar (`typer.Option(metavar=...)`); an empty one shows nothing.
    Set here for every flag of every command, so that no flag can forget it (typer has no setting for all flags)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _flags_show_no_type(self)


app = typer.Typer(
    cls=Commands,
    help="v2vz: text-driven video editing with a pretrained image diffusion model (vid2vid-zero).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"v2vz {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """v2vz: text-driven video editing with a pretrained image diffusion model (vid2vid-zero)."""


app.command()(edit.edit)
app.command()(final.final)
app.command()(status.status)
app.command()(jobs.jobs)
app.command()(jobs.attach)
app.command()(jobs.cancel)
app.command()(logs.logs)
app.command("sample-clip")(sample.sample_clip)
app.command()(serve.serve)
app.command()(watch.watch)
app.command()(timeline.timeline)
app.add_typer(models.models_app, name="models")
app.add_typer(plugins.plugin_app, name="plugin")


def main() -> None:
    """The console entry point: a usage error (an unknown option, a missing value) is one `error:` line, exit 2."""
    # The private `typer._click` on purpose: there is no supported way. Typer vendors click (typer 0.26 on; 0.29.2 is
    # installed) and its public names for those errors are only BadParameter, Abort, Exit and their base
    # TyperException; UsageError, MissingParameter, NoArgsIsHelpError and ClickException have none (fastapi/typer
    # #1867 asked for them and was closed). Nor has typer a hook for how an error is shown: in standalone mode
    # `typer.core._main` prints its boxed panel with the usage. The real `click` package's classes are others, so
    # catching them would catch nothing. Telling the four apart here is what keeps one `error:` line and exit 2.
    from typer._click.exceptions import ClickException, MissingParameter, NoArgsIsHelpError, UsageError
    from typer.exceptions import Abort

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:  # `v2vz` or `v2vz plugin` alone: the help, as typer shows it
        error.show()
        raise SystemExit(EXIT_USER) from None
    except UsageError as error:
        message = error.format_message().strip().rstrip(".")  # click ends with a full stop: the hint follows it
        if isinstance(error, MissingParameter):
            message += " (it is required)"
        hint = f"; see `{error.ctx.command_path} --help`" if error.ctx is not None else ""
        raise SystemExit(fail(message + hint, EXIT_USER).exit_code) from None
    except ClickException as error:
        raise SystemExit(fail(error.format_message(), error.exit_code).exit_code) from None
    except Abort:
        raise SystemExit(EXIT_INTERRUPTED) from None
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
