"""No flag of any `v2vz` command shows `<bool>` in its --help, as if it took a value, and `--help` itself neither:
typer's public `metavar`, set on every flag by the `Commands` group (`cls=`), not a patched typer (issue 24, 6)."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from v2vz.cli.main import app


def command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_no_help_shows_a_type_beside_a_flag() -> None:
    paths = command_paths()
    assert ["edit"] in paths and ["models", "pull"] in paths and ["plugin", "install"] in paths
    for path in paths:
        shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, (path, shown.output)
        assert "--help" in shown.output and "<bool>" not in shown.output, (path, shown.output)
        assert "<int>" in shown.output or path != ["jobs"]  # options that take a value still show their type
