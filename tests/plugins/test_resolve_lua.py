"""The Lua Resolve script (`plugins/davinci/v2vz Re-prompt clip.lua`, the free edition's entry since Resolve 21.1)
against the Python one: one table of timelines runs through both, the Python script on tests/fake_resolve.py and the
Lua script on tests/fake_resolve.lua, with a fake client (tests/plugins/lua/fake_v2vz.py), and both must place the
same takes at the same frames and say the same kinds of things. One test runs the Lua script end to end on a real
`tiny` daemon."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import sys
from pathlib import Path

import pytest

from ..conftest import CLIPS
from ..fake_resolve import (
    FakeProject,
    FakeResolve,
    FakeTimeline,
    FakeTimelineItem,
    FakeTimelineWithSelection,
    video_item,
)
from .lua_kit import LUA_SCRIPT, REPO, lua_marker_messages, lua_parse_markers, lua_shell_split, run_driver


@pytest.fixture(scope="module")
def host():
    """plugins/host/v2vz_host.py loaded by its path (it is no package), as the Resolve scripts load it."""
    name = "v2vz_host_of_the_lua_tests"
    spec = importlib.util.spec_from_file_location(name, REPO / "plugins" / "host" / "v2vz_host.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CASES = json.loads((Path(__file__).parent / "data" / "marker_cases.json").read_text(encoding="utf-8"))
FAKE_CLIENT = Path(__file__).parent / "lua" / "fake_v2vz.py"
V2VZ = str(Path(sys.executable).with_name("v2vz"))
BIKES = str(CLIPS / "bikes.mp4")


def note(prompt: str, preview: bool = False) -> str:
    lines = ["source: people riding bikes on a road", f"prompt: {prompt}", "options: --steps 2"]
    return "\n".join(lines + (["preview: yes"] if preview else []))


PROMPTS = ("people riding horses on a road", "people riding camels on a road", "people riding zebras on a road")

# The shared table: each timeline, and the marker note of each run ("": the clip has no v2vz marker).
TIMELINES = [
    {"name": "first-edit-on-a-new-track", "runs": [note(PROMPTS[0])]},
    {"name": "re-prompts-are-takes", "runs": [note(prompt) for prompt in PROMPTS]},
    {"name": "no-takes-a-track-per-edit", "takes": "no", "runs": [note(prompt) for prompt in PROMPTS]},
    {"name": "takes-refused", "takes": "refused", "runs": [note(prompt) for prompt in PROMPTS[:2]]},
    {"name": "preview-replaces-its-take", "runs": [note(PROMPTS[0]), note(PROMPTS[1], preview=True)]},
    {"name": "preview-replaces-its-clip", "takes": "no", "runs": [note(PROMPTS[0], preview=True)]},
    {"name": "no-marker", "runs": [""]},
    {"name": "malformed-marker", "runs": [note(PROMPTS[0]) + "\npreview: maybe"]},
    {"name": "no-prompt", "runs": ["source: bikes\nprompt:"]},
    {"name": "retimed-refused", "clip": {"source_end": 62}, "runs": [note(PROMPTS[0])]},
    {"name": "reversed-refused", "clip": {"source_start": 56, "source_end": 50}, "runs": [note(PROMPTS[0])]},
    {"name": "fps-refused", "clip": {"media_fps": 30}, "runs": [note(PROMPTS[0])]},
    {
        "name": "two-selected-clips",
        "selection": True,
        "select": "both",
        "second_clip": True,
        "runs": [note(PROMPTS[0]), note(PROMPTS[1])],
    },
    {"name": "selection-api-but-none-selected", "selection": True, "runs": [note(PROMPTS[0])]},
]

# What a console line says, for comparing the two scripts without their wording (first match wins).
KINDS = [
    ("submitted", r"': job \S+ submitted$"),
    ("queued", r"': queued"),
    ("progress", r"': (window \d+/\d+: )?[a-z-]+ \d+/\d+( \(cached\))?$"),
    ("editing", r"': editing source frames \d+\.\.\d+$"),
    ("preview-start", r"': a preview of source frames \d+\.\.\d+$"),
    ("making-final", r"': the preview is placed; making its final"),
    ("no-takes", r"(has no takes|did not add the edit as a take).*new track"),
    ("replaced", r"': the final replaced the preview on video track \d+(, take \d+)? at frame \d+, \d+ frames$"),
    ("placed", r"': the (edit|preview|final) is on video track \d+(, take \d+)? at frame \d+, \d+ frames$"),
    ("no-marker", r"no v2vz marker on '"),
    ("bad-marker", r"the v2vz marker on '[^']*': "),
    ("refused-clip", r"(is retimed|plays in reverse| fps on a .* fps timeline)"),
]


def kind_of(line: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, line):
            return kind
    return f"other: {line}"


def python_main():
    """The Python script's main: v2vz_resolve.py where the launcher is split from it, else the one-file script."""
    body = REPO / "plugins" / "davinci" / "v2vz_resolve.py"
    path = body if body.is_file() else REPO / "plugins" / "davinci" / "v2vz Re-prompt clip.py"
    saved = os.environ.get("V2VZ_HOST_LIB")
    os.environ["V2VZ_HOST_LIB"] = str(REPO / "plugins" / "host")  # where the one-file script finds v2vz_host
    try:
        return runpy.run_path(str(path), run_name="v2vz_resolve_under_test")["main"]
    finally:
        if saved is None:
            os.environ.pop("V2VZ_HOST_LIB")
        else:
            os.environ["V2VZ_HOST_LIB"] = saved


def python_timeline(spec: dict):
    """The table's timeline on tests/fake_resolve.py, as tests/plugins/lua/scenarios.lua builds it in Lua."""
    start = 90000
    timeline = (FakeTimelineWithSelection if spec.get("selection") else FakeTimeline)("Timeline 1", start)
    clip = spec.get("clip", {})
    fps, first, duration = clip.get("media_fps", 25), clip.get("source_start", 50), 4
    timeline.put(FakeTimelineItem("before", start, 100, video_item("b", spec["source"], fps, 250)))
    media = video_item("bikes.mp4", spec["source"], fps, 250)
    item = FakeTimelineItem("bikes.mp4", start + 100, duration, media, first, clip.get("source_end"))
    clips = [timeline.put(item)]
    if spec.get("second_clip"):
        other = video_item("cars.mp4", spec["source"], fps, 250)
        clips.append(timeline.put(FakeTimelineItem("cars.mp4", start + 200, duration, other, 10)))
    timeline.playhead = item.start + 1
    timeline.selected = {"clip": [item], "both": clips}.get(spec.get("select"), [])
    project = FakeProject(spec.get("fps", "25"), timeline, spec.get("takes", "yes"))
    return FakeResolve(project), project, timeline, clips


def run_python(main, spec: dict) -> dict:
    """The Python script on the table's timeline, run once per note: the same dump as scenarios.lua's."""
    resolve, project, timeline, clips = python_timeline(spec)
    os.environ["V2VZ_OUTPUT_DIR"] = spec["out"]
    console, results = io.StringIO(), []
    for text in spec["runs"]:
        for clip in clips:
            if text:
                clip.markers[2] = {"color": "Blue", "duration": 1, "name": "v2vz", "note": text, "customData": ""}
        with contextlib.redirect_stdout(console):
            run = main(resolve)
        results.append([{key: r.get(key) for key in ("state", "kind", "track", "take", "clip")} for r in run])
    tracks = []
    for index in range(1, timeline.GetTrackCount("video") + 1):
        items = []
        for item in timeline.GetItemListInTrack("video", index):
            count = item.GetTakesCount() or 0
            media = item.GetMediaPoolItem()
            items.append(
                {
                    "start": item.GetStart(),
                    "duration": item.GetDuration(),
                    "media": media.GetName() if media else "",
                    "takes": [item.GetTakeByIndex(t)["mediaPoolItem"].GetName() for t in range(1, count + 1)],
                    "selected": item.GetSelectedTakeIndex() or 0,
                    "color": item.GetClipColor(),
                    "folder": str(Path(media.GetClipProperty("File Path")).parent) if media else "",
                }
            )
        tracks.append({"name": timeline.GetTrackName("video", index), "items": items})
    found = [f for f in project.media_pool.GetRootFolder().GetSubFolderList() if f.GetName() == "v2vz"]
    markers = {
        clip.GetName(): sorted(
            json.loads(m["customData"])["kind"] for m in clip.GetMarkers().values() if m["name"] == "v2vz job"
        )
        for clip in clips
    }
    return {
        "tracks": tracks,
        "bin": [media.GetName() for media in found[0].GetClipList()] if found else [],
        "console": console.getvalue().splitlines(),
        "results": results,
        "markers": markers,
    }


def normalised(dump: dict, out: str) -> dict:
    """What must be equal between the scripts: the console's kinds instead of its words, each item's folder as the
    job it holds (its place among the jobs' folders) and whether it still exists."""
    folders = sorted({item["folder"] for track in dump["tracks"] for item in track["items"] if item["folder"]})
    for track in dump["tracks"]:
        for item in track["items"]:
            folder = item.pop("folder")
            item["job folder"] = "source" if not folder.startswith(out) else f"job {folders.index(folder)}"
            item["exists"] = Path(folder).is_dir() if folder.startswith(out) else True
    results = [[{k: v for k, v in r.items() if v is not None} for r in run] for run in dump["results"]]
    return {**dump, "console": [kind_of(line) for line in dump["console"]], "results": results}


@pytest.fixture(scope="module")
def both_scripts(tmp_path_factory) -> dict:
    """Every timeline of the table through both scripts with the fake client: {name: (python dump, lua dump,
    python calls, lua calls)}."""
    root = tmp_path_factory.mktemp("both")
    client = root / "v2vz"
    client.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLIENT}" "$@"\n')
    client.chmod(0o755)
    state = root / "client-state"
    saved = {key: os.environ.get(key) for key in ("V2VZ_CLIENT", "V2VZ_FAKE_STATE", "V2VZ_OUTPUT_DIR")}
    os.environ.update(V2VZ_CLIENT=str(client), V2VZ_FAKE_STATE=str(state))
    try:
        main = python_main()
        specs = {lang: [{**spec, "source": BIKES, "out": str(root / lang / spec["name"])} for spec in TIMELINES]
                 for lang in ("python", "lua")}  # fmt: skip
        python = [run_python(main, spec) for spec in specs["python"]]
        lua = run_driver("scenarios", specs["lua"], env=dict(os.environ))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
    table = {}
    for index, spec in enumerate(TIMELINES):
        outs = {lang: specs[lang][index]["out"] for lang in ("python", "lua")}
        mine = {lang: [c for c in calls if any(a.startswith(outs[lang]) for a in c)] for lang in outs}
        table[spec["name"]] = (
            normalised(python[index], outs["python"]),
            normalised(lua[index], outs["lua"]),
            mine["python"],
            mine["lua"],
        )
    return table


@pytest.mark.parametrize("name", [spec["name"] for spec in TIMELINES])
def test_both_scripts_place_the_same_takes_at_the_same_frames(both_scripts, name):
    python, lua, python_calls, lua_calls = both_scripts[name]
    assert lua == python
    assert [call[0] for call in lua_calls] == [call[0] for call in python_calls]


def test_the_table_covers_what_the_scripts_do(both_scripts):
    """The table's timelines do what their names say (so that agreeing is not agreeing on nothing)."""
    takes = both_scripts["re-prompts-are-takes"][1]
    (v2vz,) = takes["tracks"][1]["items"]
    assert takes["tracks"][1]["name"] == "v2vz" and (v2vz["start"], v2vz["duration"]) == (90100, 4)
    assert v2vz["takes"] == [f"v2vz: {prompt}" for prompt in PROMPTS] and v2vz["selected"] == 3
    assert [[(r["track"], r.get("take")) for r in run] for run in takes["results"]] == [[(2, None)], [(2, 2)], [(2, 3)]]
    assert len(both_scripts["no-takes-a-track-per-edit"][1]["tracks"]) == 4
    assert both_scripts["takes-refused"][1]["console"].count("no-takes") == 1
    preview = both_scripts["preview-replaces-its-take"][1]
    (v2vz,) = preview["tracks"][1]["items"]
    assert v2vz["takes"] == [f"v2vz: {PROMPTS[0]}", f"v2vz: {PROMPTS[1]}"] and v2vz["exists"]
    assert preview["markers"]["bikes.mp4"] == ["edit", "final", "preview"] and "replaced" in preview["console"]
    assert len(preview["bin"]) == 2  # the preview's clip left the bin
    (clip,) = both_scripts["preview-replaces-its-clip"][1]["tracks"][1]["items"]
    assert clip["media"] == f"v2vz: {PROMPTS[0]}" and clip["takes"] == []
    for refused in ("no-marker", "malformed-marker", "no-prompt", "retimed-refused", "reversed-refused", "fps-refused"):
        dump = both_scripts[refused][1]
        assert dump["results"][0][0]["state"] == "refused" and len(dump["tracks"]) == 1, refused
        assert dump["tracks"][0]["items"][1]["color"] == "", refused
    two = both_scripts["two-selected-clips"][1]
    assert [len(run) for run in two["results"]] == [2, 2] and two["markers"] == {
        "bikes.mp4": ["edit", "edit"],
        "cars.mp4": ["edit", "edit"],
    }
    # each clip's first edit on a new track of its own, its second a take of that item
    assert [[item["takes"] for item in track["items"]] for track in two["tracks"][1:]] == [
        [[f"v2vz: {p}" for p in PROMPTS[:2]]]
    ] * 2


def test_the_lua_script_builds_the_hosts_edit_and_final_command_lines(both_scripts, host):
    """The Lua script's `v2vz edit` and `v2vz final` arguments are v2vz_host.EditRequest's and FinalRequest's."""
    *_, lua_calls = both_scripts["preview-replaces-its-take"]
    edits = [call for call in lua_calls if call[0] == "edit"]
    for call, text in zip(edits, (note(PROMPTS[0]), note(PROMPTS[1], preview=True)), strict=True):
        out = call[call.index("--out") + 1]
        request = host.edit_request(host.parse_marker("v2vz\n" + text), BIKES, 50, 4, out)
        assert call == [*request.args(), "--events", "jsonl"]
    (final,) = [call for call in lua_calls if call[0] == "final"]
    assert final == [*host.FinalRequest(final[1], final[3]).args(), "--events", "jsonl"]


def test_every_marker_case_parses_as_the_table_says():
    got = lua_parse_markers([case["text"] for case in CASES])
    for case, result in zip(CASES, got, strict=True):
        assert result == (case.get("expect") or {"error": case["error"]}), case["name"]


def test_marker_messages_are_one_line_that_say_what_to_write():
    malformed = [case["text"] for case in CASES if "error" in case]
    for message in lua_marker_messages(malformed):
        assert message and "\n" not in message and re.search(r"\b(write|add|keep|close|put|did you mean)\b", message)


SHELL_WORDS = [
    "--steps 30 --guidance 5",
    '--matte "/shots/my matte.mov"',
    '\'single quoted $HOME\' "double \\"quoted\\" \\$x \\n"',
    "a\\ b\\\\c \\'d",
    'x""y \'\' ""',
    "'a'\"b\"c",
    "'unclosed",
    'unclosed "double',
    "trailing\\",
    "\t tabs\tand\nlines ",
    "--lora C:\\loras\\ink.safetensors:0.6",
    "'it''s' \"a\\b\"",
]


def test_the_options_split_is_pythons_shlex_split():
    import shlex

    def python_split(text: str):
        try:
            return shlex.split(text)
        except ValueError:
            return None

    assert lua_shell_split(SHELL_WORDS) == [python_split(text) for text in SHELL_WORDS]


def test_the_script_is_a_launcher_the_installer_reads():
    text = LUA_SCRIPT.read_text(encoding="utf-8")
    assert re.search(r"^local LAUNCHER_VERSION = [1-9]\d*\b", text, re.MULTILINE)  # as src/v2vz/cli/plugins.py reads it
    assert "V2VZ_NO_MAIN" in text  # loaded by the tests without running


def test_the_lua_script_end_to_end_on_a_real_daemon(resolve_daemon, tmp_path):
    """The Lua script with the real client and a `tiny` daemon: the first edit on a new track, the second a take."""
    env = {**resolve_daemon, "V2VZ_CLIENT": V2VZ, "V2VZ_FAKE_STATE": str(tmp_path / "unused")}
    spec = {"name": "real", "source": BIKES, "out": str(tmp_path / "out"), "runs": [note(p) for p in PROMPTS[:2]]}
    (dump,) = run_driver("scenarios", [spec], env=env, timeout=300)
    assert [run[0]["state"] for run in dump["results"]] == ["placed", "placed"], dump["console"]
    (v2vz,) = dump["tracks"][1]["items"]
    assert (v2vz["start"], v2vz["duration"], v2vz["selected"]) == (90100, 4, 2)
    assert v2vz["takes"] == [f"v2vz: {prompt}" for prompt in PROMPTS[:2]]
    assert all(Path(v2vz["folder"], f"frame_{index:06d}.png").is_file() for index in range(4))
    assert dump["tracks"][0]["items"][1]["color"] == "Green"
    assert any(re.search(r"edit 2/2$", line) for line in dump["console"])


FRAGMENTS = [
    "source: a car", "prompt: a jeep", "PROMPT:a tank", "  through snow", "\tat dusk", "options: --steps 3",
    "options: --fast=1", "options: --matte 'a b.mov' --matte-start 2", "matte: a b.mov", "edit_only: car",
    "self-replace: .25", "self replace: 1e0", "preview: On", "show mask: 0", "lora: x.safetensors:0.5", "lora:",
    'prompt: "quoted; value" | preview: no', 'source: "a \\"b\\"" c', "note: later", "source: a; x: y",
    "source: a car prompt: a jeep", "model: C:\\m.safetensors", "options: --seed", "", "v2vz", ":", "prompt: ünï ❄",
]  # fmt: skip


def test_the_lua_parser_agrees_with_parse_marker_on_mixed_markers(host):
    """Markers put together from pieces of the grammar (seeded): the Lua parser gives what parse_marker gives."""
    import random

    chooser = random.Random(7)
    texts = [
        chooser.choice(["\n", "\r\n", "; ", " "]).join(chooser.sample(FRAGMENTS, chooser.randint(1, 6)))
        for _ in range(400)
    ]

    def python(text: str) -> dict:
        try:
            return host.parse_marker(text).as_dict()
        except host.MarkerError as exc:
            return {"error": {"code": exc.code, "key": exc.key}}

    for text, lua in zip(texts, lua_parse_markers(texts), strict=True):
        assert lua == python(text), text
