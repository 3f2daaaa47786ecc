"""Each choice option of `EditOptions` accepts exactly the values of its `Literal` type, everywhere (issue 24, item
6): `validate` (journal records, the Python API), the wire (`parse_option`) and the CLI's help. A value added to a
Literal is accepted at once by all three, with no second list to forget."""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args, get_origin, get_type_hints

import pytest
from typer.testing import CliRunner

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditOptions
from v2vz.api.wire import parse_option
from v2vz.cli.main import app

CHOICE_FIELDS = {
    name: get_args(kind) for name, kind in get_type_hints(EditOptions).items() if get_origin(kind) is Literal
}


def test_every_choice_option_is_found() -> None:
    assert set(CHOICE_FIELDS) == {
        "inversion",
        "inversion_prompt",
        "null_lr_decay",
        "attention",
        "cross_replace_cutoff",
        "refine_padding",
        "vae_encode",
        "window_links",
        "method",
    }


@pytest.mark.parametrize("name", sorted(CHOICE_FIELDS))
def test_validate_and_the_wire_accept_exactly_the_literal(name: str) -> None:
    values = CHOICE_FIELDS[name]
    for value in values:
        dataclasses.replace(EditOptions(), **{name: value}).validate()
        assert parse_option(name, value) == value
    wrong = dataclasses.replace(EditOptions(), **{name: "nonsense"})
    with pytest.raises(InvalidArgument, match=f"^{name} must be one of {', '.join(values)}, got 'nonsense'$"):
        wrong.validate()
    with pytest.raises(InvalidArgument, match=f"option {name} must be {' or '.join(values)}"):
        parse_option(name, "nonsense")


@pytest.mark.parametrize("command", ["edit", "timeline"])
def test_the_help_names_the_literals_choices(command: str) -> None:
    shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}).output
    assert ", ".join(CHOICE_FIELDS["inversion"]) in shown
    if command == "edit":
        assert ", ".join(CHOICE_FIELDS["attention"]) in shown
