"""One marker grammar (docs/markers.md), one table of marker texts, every parser: the same result from each.

The table (data/marker_cases.json) holds every example of docs/markers.md, of plugins/davinci/README.md and of
docs/timelines.md, and the malformed markers, each with the fields it asks for or the mistake's code. It goes
through `v2vz_host.parse_marker` (the one Python parser), the Python Resolve script's marker reading, `v2vz
timeline`'s (which checks the values too), and the Lua script's parser under LuaJIT.
"""

from __future__ import annotations

import json
import re
import runpy
import textwrap
from pathlib import Path

import opentimelineio as otio
import pytest

from v2vz.plugin_files import host
from v2vz.timeline import prompts as timeline_prompts

from ..fake_resolve import FakeTimelineItem

REPO = Path(__file__).resolve().parents[2]
CASES = json.loads((Path(__file__).with_name("data") / "marker_cases.json").read_text(encoding="utf-8"))
IDS = [case["name"] for case in CASES]
OPTION_NAMES = {"--null-steps": "null_inner_steps"}  # `v2vz edit`'s flags whose option has another name


def outcome(parse, text: str) -> dict:
    try:
        return {"expect": parse(text).as_dict()}
    except host().MarkerError as error:
        assert "\n" not in str(error) and str(error), error
        return {"error": {"code": error.code, "key": error.key}}


def wanted(case: dict) -> dict:
    return {key: case[key] for key in ("expect", "error") if key in case}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_python_parser_reads_the_table(case):
    assert outcome(host().parse_marker, case["text"]) == wanted(case)


def test_the_lua_parser_reads_the_table_as_the_python_one_does():
    """LuaJIT runs the Lua script's parser on every text at once; each result must be the table's."""
    from .lua_kit import lua_parse_markers

    results = lua_parse_markers([case["text"] for case in CASES])
    assert len(results) == len(CASES)
    for case, result in zip(CASES, results, strict=True):
        got = {"error": result["error"]} if "error" in result else {"expect": result}
        assert got == wanted(case), case["name"]


@pytest.fixture(scope="module")
def resolve_script() -> dict:
    """The Python Resolve script's module, from the checkout (its v2vz_host is the sibling plugins/host)."""
    script = runpy.run_path(str(REPO / "plugins" / "davinci" / "v2vz_resolve.py"), run_name="v2vz_resolve_grammar")
    assert script["host"] is not None
    return script


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_resolve_script_reads_its_marker_by_the_grammar(case, resolve_script):
    item = FakeTimelineItem("shot", 0, 10, None)
    item.AddMarker(0, "Blue", "v2vz", case["text"], 1, "")
    try:
        got = {"expect": resolve_script["prompts_from_marker"](item, "shot").as_dict()}
    except resolve_script["Refused"] as refused:
        message = str(refused)
        assert message.startswith("the v2vz marker on 'shot': ") and "\n" not in message, message
        got = {"error": message}
    if "error" in case:
        assert "error" in got and isinstance(got["error"], str), case["name"]
    else:
        assert got == wanted(case), case["name"]


def timeline_options(expected: dict) -> dict[str, str]:
    """The option map `v2vz timeline` should give for a parsed marker: each `--name VALUE` by its option's name."""
    options: dict[str, str] = {}
    words = iter(expected["options"])
    for word in words:
        if word == "--fast":
            options["inversion"] = "direct"
        else:
            name = OPTION_NAMES.get(word, word[2:].replace("-", "_"))
            options[name] = next(words)
    if expected["edit_only"]:
        options["edit_only"] = expected["edit_only"]
    if expected["self_replace"]:
        options["self_replace"] = repr(expected["self_replace"])
    if expected["method"]:
        options["method"] = expected["method"]
    return options


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_v2vz_timeline_reads_the_same_fields(case):
    """A marker named `v2vz` whose comment is the text: the timeline's prompts are the parser's fields, checked."""
    clip = otio.schema.Clip(name="c")
    clip.markers.append(otio.schema.Marker(name="v2vz", comment=case["text"]))
    if "error" in case:
        with pytest.raises(timeline_prompts.BadPrompts) as caught:
            timeline_prompts.from_markers(clip)
        assert "\n" not in str(caught.value)
        return
    expected = case["expect"]
    got = timeline_prompts.from_markers(clip)
    assert (got.source, got.prompt, got.model) == (expected["source"], expected["prompt"], expected["model"])
    assert (got.matte, got.matte_start, list(got.loras)) == (
        expected["matte"],
        expected["matte_start"],
        expected["loras"],
    )
    assert got.options == timeline_options(expected)
    for flag, words in (("preview", "preview: yes"), ("show_mask", "show mask: yes")):
        assert (words in got.note) == expected[flag], got.note
    assert all(line in got.note for line in expected["ignored"])


def test_every_documented_example_is_in_the_table():
    """The docs' marker examples (code blocks of docs/markers.md, the Resolve README's marker blocks) are cases."""
    texts = {case["text"].removeprefix("v2vz\n") for case in CASES}
    blocks = []
    for doc in (REPO / "docs" / "markers.md", REPO / "plugins" / "davinci" / "README.md"):
        blocks += re.findall(r"```\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    blocks = [textwrap.dedent(block).strip() for block in blocks]
    examples = [block for block in blocks if re.match(r"(?i)(source|prompt|edit only|matte|model):", block)]
    assert examples, "no marker example found in the docs"
    for example in examples:
        assert any(example in text for text in texts), example


def test_a_markers_method_and_its_options_reach_the_edit_command_line():
    """`method: flowedit` and FlowEdit's options go to `v2vz edit` as the client takes them, in every host."""
    marker = host().parse_marker("source: a car\nprompt: a jeep\nmethod: flowedit\noptions: --n-max 30 --n-avg 2")
    args = host().edit_request(marker, "/clips/a.mp4", 0, 9, "/out").args()
    assert args[args.index("--method") + 1] == "flowedit"
    assert args[args.index("--n-max") + 1] == "30" and args[args.index("--n-avg") + 1] == "2"
    plain = host().edit_request(host().parse_marker("source: a car\nprompt: a jeep"), "/clips/a.mp4", 0, 9, "/out")
    assert "--method" not in plain.args()
