"""The `v2vz` command: every command group registered in one place, in the order `v2vz --help` lists them.

Nothing here imports torch: only `edit --local`, `serve` and `sample-clip` load the engine, inside the command.
"""

from __future__ import annotations

import sys

import typer

from v2vz.cli import edit, jobs, plugins, sample, serve, watch

app = typer.Typer(
    help="v2vz: text-driven video editing with a pretrained image diffusion model (vid2vid-zero).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command()(edit.edit)
app.command()(jobs.attach)
app.command()(jobs.cancel)
app.command()(jobs.jobs)
app.command("sample-clip")(sample.sample_clip)
app.command()(serve.serve)
app.add_typer(plugins.plugin_app, name="plugin")
app.command()(watch.watch)


def main() -> None:  # pragma: no cover - console entry point convenience
    sys.exit(app())


if __name__ == "__main__":
    main()
