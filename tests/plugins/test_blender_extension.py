"""The Blender VSE extension in real Blender (`bpy` from PyPI, its own venv) against a real daemon (`tiny` model).

The Blender side runs as a script in that venv's Python; it prints one `SUMMARY {...}` line that these tests check.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import random
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from v2vz.api.errors import V2vzError
from v2vz.cli.plugins import build_blender_zip
from v2vz_engine.media.image_sequence import IMAGE_SUFFIXES, sequence_files

from ..conftest import CLIPS, serve_tiny

REPO = Path(__file__).resolve().parents[2]
V2VZ = str(Path(sys.executable).with_name("v2vz"))
CLIP = CLIPS / "bikes.mp4"  # 640x272, 25 fps, 250 frames


# Blender releases the tests run in, each with its own virtual environment made by the README's test command:
# 4.2 LTS (the oldest supported, Python 3.11), 5.0 (Python 3.11) and 5.2 LTS (Python 3.13): they cover every
# branch of compat.py (strips vs sequences, frame_final_* vs left_handle, new_effect, sequencer_scene).
BLENDERS = {"4.2": ".venv-bpy-4.2", "5.0": ".venv-bpy", "5.2": ".venv-bpy-5.2"}


def bpy_python(version: str) -> Path:
    """$V2VZ_BPY_PYTHON_<4_2|5_0|5_2> (or $V2VZ_BPY_PYTHON for 5.0), else the venv the README's command makes."""
    key = "V2VZ_BPY_PYTHON_" + version.replace(".", "_")
    configured = os.environ.get(key) or (os.environ.get("V2VZ_BPY_PYTHON") if version == "5.0" else None)
    candidate = Path(configured) if configured else REPO / BLENDERS[version] / "bin" / "python"
    if candidate.is_file():
        return candidate
    pytest.fail(
        f"no Python with Blender {version}'s `bpy` module at {candidate}: run the README's test command, which "
        f"creates {BLENDERS[version]}, or set {key} to such a python"
    )


def unpack_extension(folder: Path) -> Path:
    """The extension as `v2vz plugin install blender` ships it (build_blender_zip, v2vz_host.py included), unpacked
    into folder/v2vz_blender: the tests import what users install. Returns folder, for sys.path."""
    with zipfile.ZipFile(build_blender_zip(folder / "zip")) as archive:
        archive.extractall(folder / "v2vz_blender")
    return folder


def without_blender(extension: Path, module: str):
    """A module of the unpacked extension in this Python, which has no Blender: the package is made by hand (its
    __init__ registers classes with Blender) and `bpy` is a stub while the module loads (it only imports bpy)."""
    package = f"v2vz_blender_without_bpy_{abs(hash(str(extension)))}"
    if package not in sys.modules:
        shell = types.ModuleType(package)
        shell.__path__ = [str(extension / "v2vz_blender")]
        sys.modules[package] = shell
    stub = types.ModuleType("bpy")
    stubbed = sys.modules.setdefault("bpy", stub) is stub
    try:
        return importlib.import_module(f"{package}.{module}")
    finally:
        if stubbed:
            del sys.modules["bpy"]


@pytest.fixture(scope="module")
def extension(tmp_path_factory) -> Path:
    return unpack_extension(tmp_path_factory.mktemp("extension"))


SCRIPT = r"""
import json, os, struct, sys, time
plugins, clip, work = sys.argv[1:4]
sys.path.insert(0, plugins)
import bpy
import v2vz_blender
from v2vz_blender import compat

summary = {"background": bpy.app.background, "version": bpy.app.version_string, "via": "bpy.ops"}
OPTS = dict(prompt="people riding horses on a road", source_prompt="people riding bikes on a road", steps=3)


def run(strip):
    editor = compat.sequencer_scene().sequence_editor
    editor.active_strip = strip
    v2vz_blender.LAST_REPORT.clear()
    error = ""
    try:
        result = bpy.ops.sequencer.v2vz_reprompt(**OPTS)
    except RuntimeError as exc:
        if "poll" in str(exc):  # headless poll failure: call the operator's logic itself
            summary["via"] = "run_operator"
            result = v2vz_blender.run_operator(None, bpy.context, strip, OPTS)
        else:
            result, error = {"CANCELLED"}, str(exc)
    return {"result": sorted(result), "error": error, **v2vz_blender.LAST_REPORT}


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return list(struct.unpack(">II", head[16:24]))


def describe(strip):
    return {
        "name": strip.name, "type": strip.type, "channel": strip.channel,
        "start": compat.left_handle(strip), "end": compat.right_handle(strip),
        "content_start": compat.content_start(strip),
        "offsets": [strip.frame_offset_start, strip.frame_offset_end],
        "filepath": getattr(strip, "filepath", ""),
    }


def result_info(strip):
    folder = bpy.path.abspath(strip.directory)
    files = [os.path.join(folder, e.filename) for e in strip.elements]
    return {
        **describe(strip), "folder": folder, "elements": len(strip.elements),
        "files_exist": all(os.path.isfile(f) for f in files),
        "sizes": sorted({tuple(png_size(f)) for f in files if os.path.isfile(f)}),
        "pngs_in_folder": len([n for n in os.listdir(folder) if n.endswith(".png")]) if os.path.isdir(folder) else 0,
    }


v2vz_blender.register()
try:
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    blend = os.path.join(work, "edit.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)  # saved first: the frames go to //v2vz/<job>/
    scene = compat.sequencer_scene()
    editor = scene.sequence_editor_create()
    movie = compat.strips(editor).new_movie("bikes", clip, 2, 10)
    movie.frame_offset_start = 37  # trimmed at both ends: source frames 37..40, timeline 47..50
    movie.frame_offset_end = 209
    blocker = compat.new_effect(editor, "blocker", "COLOR", 3, 45, 3)  # overlaps 47: channel 3 is not free
    summary["source_before"] = describe(movie)
    summary["first"] = run(movie)
    results = [s for s in compat.strips(editor) if s.type == "IMAGE"]
    summary["first_result"] = result_info(results[0]) if results else None
    summary["source_after"] = describe(editor.strips_all["bikes"] if hasattr(editor, "strips_all") else movie)
    bpy.ops.wm.save_as_mainfile(filepath=blend)

    bpy.ops.wm.open_mainfile(filepath=blend)
    scene = compat.sequencer_scene()
    editor = scene.sequence_editor
    reopened = [s for s in compat.strips(editor) if s.type == "IMAGE"]
    summary["reopened"] = result_info(reopened[0]) if reopened else None
    movie = compat.strips_all(editor)["bikes"]
    summary["reopened_source"] = describe(movie)

    summary["second"] = run(movie)
    second = [s for s in compat.strips(editor) if s.type == "IMAGE" and s.name != reopened[0].name]
    summary["second_result"] = result_info(second[0]) if second else None

    # The UI path: the job runs in the background thread and the timer's drain grows the strip frame by frame.
    active = v2vz_blender.start_job(bpy.context, movie, {**OPTS, "window": 2})  # 2 windows: 2 frames, then 2
    v2vz_blender.JOBS[active.key] = active
    lengths = []
    while v2vz_blender.drain_jobs():
        strip = active.result.strip()
        lengths.append(compat.duration(strip) if strip is not None else 0)
        time.sleep(0.02)
    lengths.append(compat.duration(active.result.strip()))
    seen = [n for i, n in enumerate(lengths) if i == 0 or n != lengths[i - 1]]  # each length once, in order
    summary["streamed"] = {"lengths": seen, "channel": active.result.channel, "report": dict(v2vz_blender.LAST_REPORT)}

    # Cancel from the UI after the first window (1 frame of 50 steps) arrived: the frames that arrived stay.
    active = v2vz_blender.start_job(bpy.context, movie, {**OPTS, "steps": 50, "window": 1})
    v2vz_blender.JOBS[active.key] = active
    cancel_result, deadline = None, time.monotonic() + 300
    while v2vz_blender.drain_jobs() and time.monotonic() < deadline:
        if cancel_result is None and active.result.appended >= 1:
            cancel_result = sorted(bpy.ops.sequencer.v2vz_cancel(job=active.key))
        time.sleep(0.02)
    strip = active.result.strip()
    summary["cancelled"] = {
        "cancel_result": cancel_result, "outcome": active.runner.state.outcome, "appended": active.result.appended,
        "length": compat.duration(strip) if strip is not None else 0, "report": dict(v2vz_blender.LAST_REPORT),
        "pngs": len([n for n in os.listdir(active.folder) if n.endswith(".png")]),
    }

    summary["color_strip"] = run(compat.strips_all(editor)["blocker"])
    speed = compat.new_effect(editor, "speedy", "SPEED", 9, 47, 4, input1=movie)
    summary["speed_strip"] = run(speed)
    summary["speed_input"] = run(movie)
    compat.strips(editor).remove(speed)

    os.environ["V2VZ_ENDPOINT"] = os.path.join(work, "nothing-here", "endpoint.json")
    count = len(list(compat.strips(editor)))
    summary["no_daemon"] = run(movie)
    summary["no_daemon_added"] = len(list(compat.strips(editor))) - count
finally:
    v2vz_blender.unregister()
print("SUMMARY " + json.dumps(summary), flush=True)
"""


@pytest.fixture(scope="module")
def served(model_cache):
    """One daemon for the module (conftest.serve_tiny)."""
    with serve_tiny(model_cache, "v2vz-blender-") as (env, root, process):
        yield env, root


# The start every client-driven scenario shares: the installed client, the extension registered, a 25 fps scene.
CLIENT_SCENARIO_START = r"""
import json, os, sys
plugins, clip, work, client = sys.argv[1:5]
os.environ["V2VZ_CLIENT"] = client
sys.path.insert(0, plugins)
import bpy
import v2vz_blender
from v2vz_blender import compat, jobs, strips

v2vz_blender.register()
summary = {}
try:
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
"""


def run_scenario(python: Path, script: Path, text: str, args: list[str], env: dict) -> dict:
    """Run a scenario script in Blender's Python with the installed client; its last `SUMMARY {...}` line."""
    script.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [str(python), str(script), *args],
        env={**env, "V2VZ_CLIENT": V2VZ},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads(lines[-1][len("SUMMARY ") :])


@pytest.fixture(scope="module", params=list(BLENDERS), ids=[f"blender-{v}" for v in BLENDERS])
def summary(request, served, extension, tmp_path_factory) -> dict:
    python = bpy_python(request.param)
    env, _ = served
    work = tmp_path_factory.mktemp("blender")
    return run_scenario(python, work / "scenario.py", SCRIPT, [str(extension), str(CLIP), str(work)], env)


def test_runs_in_background_mode(summary):
    assert summary["background"] is True
    assert summary["first"]["result"] == ["FINISHED"], summary["first"]
    assert summary["first"]["level"] == "INFO"


def test_result_strip_above_the_source_on_the_first_free_channel(summary):
    result = summary["first_result"]
    assert result is not None, summary["first"]
    # the source is on channel 2, a color strip overlaps the range on 3: the first free channel is 4
    assert (result["type"], result["channel"], result["start"], result["end"]) == ("IMAGE", 4, 47, 51)
    assert result["elements"] == 4 and result["files_exist"] and result["pngs_in_folder"] == 4
    assert result["sizes"] == [[640, 272]]
    assert Path(result["folder"]).parent.name == "v2vz"  # //v2vz/<job>/ beside the saved .blend


def test_source_strip_unchanged(summary):
    before, after = summary["source_before"], summary["source_after"]
    assert before == after == {**before, "channel": 2, "start": 47, "end": 51}
    assert summary["reopened_source"] == before


def test_result_survives_save_and_reopen(summary):
    reopened, first = summary["reopened"], summary["first_result"]
    assert reopened is not None
    for key in ("channel", "start", "end", "elements", "sizes", "files_exist", "folder"):
        assert reopened[key] == first[key], key


def test_second_run_goes_to_the_next_free_channel(summary):
    assert summary["second"]["result"] == ["FINISHED"], summary["second"]
    second = summary["second_result"]
    assert (second["channel"], second["start"], second["end"], second["elements"]) == (5, 47, 51, 4)
    assert second["folder"] != summary["first_result"]["folder"] and second["files_exist"]


def test_ui_path_streams_frames_onto_a_growing_strip(summary):
    streamed = summary["streamed"]
    assert streamed["channel"] == 6 and streamed["report"]["level"] == "INFO", streamed
    lengths = streamed["lengths"]
    # The strip never shrinks, ends with all 4 frames, and showed the first window's 2 frames while the second was
    # still being edited (seconds of work, against a 20 ms poll).
    assert lengths == sorted(lengths) and lengths[-1] == 4 and 2 in lengths, streamed


def test_cancel_from_the_sidebar_keeps_the_frames_that_arrived(summary):
    cancelled = summary["cancelled"]
    assert cancelled["cancel_result"] == ["FINISHED"] and cancelled["outcome"] == "cancelled", cancelled
    assert 1 <= cancelled["appended"] < 4 and cancelled["length"] == cancelled["appended"], cancelled
    assert cancelled["pngs"] == cancelled["appended"], cancelled  # on disk exactly what is on the timeline
    assert cancelled["report"]["level"] == "WARNING" and "cancel" in cancelled["report"]["message"], cancelled


def test_unsupported_strips_are_reported(summary):
    for case, words in (
        ("color_strip", "color strip"),
        ("speed_strip", "speed effect strip"),
        ("speed_input", "has a speed effect"),
    ):
        report = summary[case]
        assert report["result"] == ["CANCELLED"] and report["level"] == "ERROR", (case, report)
        assert words in report["message"] and "Traceback" not in report["message"], (case, report)


def test_no_daemon_is_reported_with_the_reason(summary):
    report = summary["no_daemon"]
    assert report["result"] == ["CANCELLED"] and report["level"] == "ERROR", report
    assert "v2vz serve" in report["message"] and "Traceback" not in report["message"], report
    assert summary["no_daemon_added"] == 0


# ---------------------------------------------------------------------------------------------------------------
# Image strips: the visible images of a numbered PNG sequence are sent as `v2vz edit FIRST --start 0 --frames N`

IMAGE_SCRIPT = r"""
import json, os, struct, sys
plugins, frames, work = sys.argv[1:4]
sys.path.insert(0, plugins)
import bpy
import v2vz_blender
from v2vz_blender import compat

summary = {"version": bpy.app.version_string, "via": "bpy.ops"}
OPTS = dict(prompt="a blue square", source_prompt="a red square", steps=2)


def run(strip):
    editor = compat.sequencer_scene().sequence_editor
    editor.active_strip = strip
    v2vz_blender.LAST_REPORT.clear()
    count = len(list(compat.strips(editor)))
    error = ""
    try:
        result = bpy.ops.sequencer.v2vz_reprompt(**OPTS)
    except RuntimeError as exc:
        if "poll" in str(exc):
            summary["via"] = "run_operator"
            result = v2vz_blender.run_operator(None, bpy.context, strip, OPTS)
        else:
            result, error = {"CANCELLED"}, str(exc)
    added = len(list(compat.strips(editor))) - count
    return {"result": sorted(result), "error": error, "added": added, **v2vz_blender.LAST_REPORT}


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return list(struct.unpack(">II", head[16:24]))


def describe(strip):
    return {
        "name": strip.name, "type": strip.type, "channel": strip.channel,
        "start": compat.left_handle(strip), "end": compat.right_handle(strip),
        "content_start": compat.content_start(strip),
        "offsets": [strip.frame_offset_start, strip.frame_offset_end],
        "directory": strip.directory, "elements": [e.filename for e in strip.elements],
    }


def image_strip(editor, name, files, channel, start):
    strip = compat.strips(editor).new_image(name, os.path.join(frames, files[0]), channel, start)
    for file in files[1:]:
        strip.elements.append(file)
    return strip


v2vz_blender.register()
try:
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(work, "images.blend"))
    scene = compat.sequencer_scene()
    editor = scene.sequence_editor_create()
    names = sorted(n for n in os.listdir(frames) if n.startswith("shot_"))
    shots = image_strip(editor, "shots", names, 2, 20)
    shots.frame_offset_start = 2  # trimmed at both ends: images 2..5 (shot_0014..shot_0020), timeline 22..25
    shots.frame_offset_end = 4
    left, right = compat.left_handle(shots), compat.right_handle(shots)
    summary["shown"] = [shots.strip_elem_from_frame(f).filename for f in range(left, right)]  # Blender's own view
    summary["source_range"] = list(v2vz_blender.source_range(scene, shots))
    summary["source_before"] = describe(shots)
    summary["edit"] = run(shots)
    results = [s for s in compat.strips(editor) if s.type == "IMAGE" and s.name != "shots"]
    if results:
        result = results[0]
        folder = bpy.path.abspath(result.directory)
        files = [os.path.join(folder, e.filename) for e in result.elements]
        summary["result"] = {
            **describe(result), "folder": folder,
            "files_exist": all(os.path.isfile(f) for f in files),
            "sizes": sorted({tuple(png_size(f)) for f in files if os.path.isfile(f)}),
            "pngs_in_folder": len([n for n in os.listdir(folder) if n.endswith(".png")]),
        }
    summary["source_after"] = describe(compat.strips_all(editor)["shots"])

    holes = image_strip(editor, "holes", ["shot_0010.png", "shot_0014.png", "shot_0016.png"], 8, 20)
    summary["holes"] = run(holes)
    backwards = image_strip(editor, "backwards", ["shot_0016.png", "shot_0014.png"], 9, 20)
    summary["backwards"] = run(backwards)
    held = image_strip(editor, "held", ["shot_0026.png", "shot_0028.png"], 10, 20)
    held.frame_offset_end = -3  # the last image held for 3 more frames
    summary["held"] = run(held)
    early = image_strip(editor, "early", ["shot_0026.png", "shot_0028.png"], 11, 20)
    early.frame_offset_start = -2  # the first image held for 2 frames before it
    summary["early"] = run(early)

    # Hold Offset (animation_offset_start) and trims together: the range must match what Blender displays.
    cut = image_strip(editor, "cut", names, 12, 40)
    cut.animation_offset_start = 1
    cut.frame_offset_start, cut.frame_offset_end = 2, 3
    left, right = compat.left_handle(cut), compat.right_handle(cut)
    summary["cut_shown"] = [cut.strip_elem_from_frame(f).filename for f in range(left, right)]
    path, first, count = v2vz_blender.source_range(scene, cut)
    summary["cut_range"] = [os.path.basename(path), first, count]
finally:
    v2vz_blender.unregister()
print("SUMMARY " + json.dumps(summary), flush=True)
"""

FRAME_NUMBERS = range(10, 30, 2)  # shot_0010.png .. shot_0028.png: gaps in the numbering are fine


@pytest.fixture(scope="module", params=list(BLENDERS), ids=[f"blender-{v}" for v in BLENDERS])
def image_summary(request, served, extension, tmp_path_factory) -> dict:
    python = bpy_python(request.param)
    env, _ = served
    work = tmp_path_factory.mktemp("blender-images")
    frames = work / "frames"
    frames.mkdir()
    for index, number in enumerate(FRAME_NUMBERS):
        Image.new("RGB", (96, 64), (20 * index, 100, 200 - 20 * index)).save(frames / f"shot_{number:04d}.png")
    Image.new("RGB", (96, 64)).save(frames / "take_0012.png")  # another prefix in the folder: not in the sequence
    summary = run_scenario(python, work / "images.py", IMAGE_SCRIPT, [str(extension), str(frames), str(work)], env)
    return {**summary, "frames": str(frames)}


def test_image_strip_sends_its_first_visible_image(image_summary):
    shown = ["shot_0014.png", "shot_0016.png", "shot_0018.png", "shot_0020.png"]
    assert image_summary["shown"] == shown  # what Blender itself displays between the trimmed handles
    assert image_summary["source_range"] == [str(Path(image_summary["frames"]) / "shot_0014.png"), 0, 4]


def test_image_strip_with_hold_offset_and_trims(image_summary):
    shown = image_summary["cut_shown"]  # Hold Offset 1 leaves images 1..9; trims of 2 and 3 keep images 3..6
    assert shown == ["shot_0016.png", "shot_0018.png", "shot_0020.png", "shot_0022.png"]
    assert image_summary["cut_range"] == [shown[0], 0, len(shown)]


def test_image_strip_result(image_summary):
    edit = image_summary["edit"]
    assert (edit["result"], edit["level"], edit["added"]) == (["FINISHED"], "INFO", 1), edit
    result = image_summary["result"]
    assert (result["type"], result["channel"], result["start"], result["end"]) == ("IMAGE", 3, 22, 26)
    assert len(result["elements"]) == 4 and result["files_exist"] and result["pngs_in_folder"] == 4
    assert result["sizes"] == [[96, 64]]  # the source images' size
    assert result["name"] == "a blue square" and Path(result["folder"]).parent.name == "v2vz"


def test_image_strip_source_unchanged(image_summary):
    before, after = image_summary["source_before"], image_summary["source_after"]
    assert before == after
    assert (before["channel"], before["start"], before["end"], len(before["elements"])) == (2, 22, 26, 10)


def test_image_strips_that_are_not_one_sequence_are_refused(image_summary):
    expected = {
        "holes": "'holes' cannot be re-prompted: shot_0012.png lies between shot_0010.png and shot_0014.png but is "
        "not in the strip: v2vz reads every numbered image in order, so move the strip's images to a folder of "
        "their own",
        "backwards": "'backwards' cannot be re-prompted: shot_0014.png follows shot_0016.png but its number is not "
        "higher: the images must go up in number",
        "held": "'held' shows frames after its last image (hold): trim it to its 2 images",
        "early": "'early' starts before its first image (hold): trim it to its images",
    }
    for case, message in expected.items():
        report = image_summary[case]
        assert (report["result"], report["level"], report["added"]) == (["CANCELLED"], "ERROR", 0), (case, report)
        assert report["message"] == message, (case, report)
        assert report["error"] == "" or message in report["error"], (case, report)


# ---------------------------------------------------------------------------------------------------------------
# Takes: every re-prompt is a new take above the source, the earlier ones muted, never overwritten; the sidebar's
# take list and "make active"; a preview, then its final replacing it in place. One Blender (5.0): the takes code has
# no compat branch of its own.

TAKES_SCRIPT = r"""
import hashlib, json, os, sys, time
plugins, clip, work = sys.argv[1:4]
sys.path.insert(0, plugins)
import bpy
import v2vz_blender
from v2vz_blender import compat, takes

summary = {"version": bpy.app.version_string, "via": []}
PROMPTS = [
    "people riding horses on a road",
    "people riding camels on a road",
    "a watercolor painting of people riding bicycles through a misty autumn forest at dawn",
]
BASE = dict(source_prompt="people riding bikes on a road", steps=3)  # SCRIPT's range and inversion: cached by now


def call(operator, active, options, **kwargs):
    # bpy.ops as a batch script calls it (on the active strip); the operator's logic when the headless poll refuses it
    editor = compat.sequencer_scene().sequence_editor
    editor.active_strip = active
    v2vz_blender.LAST_REPORT.clear()
    error = ""
    try:
        result = getattr(bpy.ops.sequencer, operator)(**options, **kwargs)
        summary["via"].append("bpy.ops")
    except RuntimeError as exc:
        if "poll" in str(exc):
            summary["via"].append("run_operator")
            result = v2vz_blender.run_operator(None, bpy.context, active, {**options, **kwargs})
        else:
            result, error = {"CANCELLED"}, str(exc)
    return {"result": sorted(result), "error": error, **v2vz_blender.LAST_REPORT}


def editor():
    return compat.sequencer_scene().sequence_editor


def files_of(folder):
    # every file of a folder with its bytes' digest (None: no folder)
    if not os.path.isdir(folder):
        return None
    digest = lambda name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
    return {name: digest(name) for name in sorted(os.listdir(folder))}


def listed(strip):
    return takes.take_list(editor(), strip)


def by_name(name):
    return compat.strips_all(editor()).get(name)


class Layout:
    # a stand-in for the sidebar's UILayout: records what the panel shows (labels, buttons and what they act on)
    def __init__(self, shown):
        self.shown = shown

    def label(self, text="", icon="NONE"):
        self.shown.append(["label", text])

    def operator(self, idname, text="", icon="NONE"):
        button = type("Button", (), {})()
        self.shown.append(["operator", idname, text, button])
        return button

    def prop(self, *args, **kwargs):
        pass

    def progress(self, factor=0.0, type="BAR", text=""):
        self.shown.append(["progress", text])

    def separator(self):
        pass

    def box(self):
        return self

    column = row = lambda self, align=False: self


def draw_panel(active):
    editor().active_strip = active
    shown = []
    panel = type("Panel", (), {"layout": Layout(shown)})()
    v2vz_blender.ui.SEQUENCER_PT_v2vz.draw(panel, bpy.context)
    return [item[:3] + [dict(vars(item[3]))] if item[0] == "operator" else item for item in shown]


v2vz_blender.register()
try:
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    blend = os.path.join(work, "takes.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    scene = compat.sequencer_scene()
    ed = scene.sequence_editor_create()
    movie = compat.strips(ed).new_movie("bikes", clip, 2, 10)
    movie.frame_offset_start = 37  # source frames 37..40 on timeline 47..50
    movie.frame_offset_end = 209

    # Three re-prompts of one strip; the frames of the earlier takes are read before and after the later ones.
    runs, folders = [], []
    for prompt in PROMPTS:
        runs.append(call("v2vz_reprompt", by_name("bikes"), {**BASE, "prompt": prompt}))
        folders.append(listed(by_name("bikes"))[-1]["folder"] if listed(by_name("bikes")) else "")
        summary.setdefault("files_after", []).append({f: files_of(f) for f in folders})
    summary["reprompts"] = runs
    summary["three"] = listed(by_name("bikes"))
    summary["source_props"] = {k: by_name("bikes").get(k) for k in (takes.SOURCE_ID, takes.TAKE_COUNTER)}

    # The source renamed and moved to another channel: its takes are still its takes, listed from it or any take.
    by_name("bikes").name = "shot A"
    by_name("shot A").channel = 1
    summary["after_rename"] = [t["name"] for t in listed(by_name("shot A"))]
    summary["from_a_take"] = [t["name"] for t in listed(by_name(summary["three"][1]["name"]))]

    # "Make active" on take 1: unmuted, takes 2 and 3 muted.
    first = summary["three"][0]["name"]
    summary["activate"] = call("v2vz_take", by_name(first), {}, strip=first)
    summary["activated"] = [(t["take"], t["active"]) for t in listed(by_name("shot A"))]

    # Saved and reopened: the takes and what they record stay.
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    bpy.ops.wm.open_mainfile(filepath=blend)
    summary["reopened"] = listed(by_name("shot A"))

    # A preview, asked for with a take active: a preview take of the source (take 4) above it.
    summary["preview"] = call("v2vz_preview", by_name(first), {**BASE, "prompt": "people riding zebras on a road"})
    summary["with_preview"] = listed(by_name("shot A"))
    preview = summary["with_preview"][-1]
    summary["preview_files"] = files_of(preview["folder"])
    summary["panel"] = draw_panel(by_name(preview["name"]))

    # Its final with no daemon to make it: the preview stays as it was, and the user reads why.
    endpoint = os.environ["V2VZ_ENDPOINT"]
    os.environ["V2VZ_ENDPOINT"] = os.path.join(work, "nothing-here", "endpoint.json")
    summary["final_failed"] = call("v2vz_make_final", by_name(preview["name"]), {}, strip=preview["name"])
    os.environ["V2VZ_ENDPOINT"] = endpoint
    summary["after_failed_final"] = listed(by_name("shot A"))
    summary["preview_files_after_failure"] = files_of(preview["folder"])

    # The preview trimmed by a frame at its start: the final takes the same range.
    trimmed = by_name(preview["name"])
    compat.set_handle_offsets(trimmed, 1, 0)
    summary["trimmed_preview"] = {**listed(trimmed)[-1], "offsets": compat.handle_offsets(trimmed)}

    # The final from the sidebar (the UI path: the timer drains it): the preview stays while it runs, then the final
    # replaces it in place and the preview's frames folder goes.
    active = v2vz_blender.start_final(bpy.context, by_name(preview["name"]))
    v2vz_blender.JOBS[active.key] = active
    summary["panel_while_final"] = draw_panel(by_name(preview["name"]))
    seen, deadline = set(), time.monotonic() + 300
    while v2vz_blender.drain_jobs() and time.monotonic() < deadline:
        seen.add(by_name(preview["name"]) is not None and files_of(preview["folder"]) == summary["preview_files"])
        time.sleep(0.02)
    summary["preview_while_final"] = sorted(seen)
    summary["final"] = dict(v2vz_blender.LAST_REPORT)
    summary["with_final"] = listed(by_name("shot A"))
    summary["preview_strip_after_final"] = by_name(preview["name"]) is not None
    summary["preview_folder_after_final"] = files_of(preview["folder"])
    final = summary["with_final"][-1]
    summary["final_files"] = files_of(final["folder"])
    summary["final_elements"] = len(by_name(final["name"]).elements) if by_name(final["name"]) else 0
    summary["final_offsets"] = compat.handle_offsets(by_name(final["name"])) if by_name(final["name"]) else None
    summary["files_at_end"] = {f: files_of(f) for f in folders}
    summary["make_final_of_a_final"] = call("v2vz_make_final", by_name(final["name"]), {}, strip=final["name"])
finally:
    v2vz_blender.unregister()
print("SUMMARY " + json.dumps(summary), flush=True)
"""


@pytest.fixture(scope="module")
def takes_summary(served, extension, tmp_path_factory) -> dict:
    python = bpy_python("5.0")
    env, _ = served
    work = tmp_path_factory.mktemp("blender-takes")
    return run_scenario(python, work / "takes.py", TAKES_SCRIPT, [str(extension), str(CLIP), str(work)], env)


def test_each_reprompt_is_a_new_take_named_after_its_prompt(takes_summary):
    for run in takes_summary["reprompts"]:
        assert (run["result"], run["level"]) == (["FINISHED"], "INFO"), run
    three = takes_summary["three"]
    assert [t["take"] for t in three] == [1, 2, 3]
    assert [t["channel"] for t in three] == [3, 4, 5]  # each on the next free channel above the source (2)
    assert [(t["start"], t["end"]) for t in three] == [(47, 51)] * 3
    assert [t["name"] for t in three] == [
        "people riding horses on a road",
        "people riding camels on a road",
        "a watercolor painting of people riding...",  # a long prompt is cut at a word
    ]
    assert [t["prompt"] for t in three] == [
        "people riding horses on a road",
        "people riding camels on a road",
        "a watercolor painting of people riding bicycles through a misty autumn forest at dawn",
    ]


def test_a_take_records_what_made_it(takes_summary):
    three, source = takes_summary["three"], takes_summary["source_props"]
    assert source["v2vz_takes"] == 3 and len(source["v2vz_source_id"]) == 32, source
    for take in three:
        assert take["take_of"] == source["v2vz_source_id"] and take["source"] == "bikes", take
        assert take["source_prompt"] == "people riding bikes on a road" and take["model"] == "", take
        assert take["preview"] is False and len(take["job"]) >= 8 and len(take["time"]) == 19, take
        assert Path(take["folder"]).parent.name == "v2vz", take  # //v2vz/<job>/ beside the saved .blend
    assert len({t["job"] for t in three}) == 3 and len({t["folder"] for t in three}) == 3


def test_only_the_newest_take_is_unmuted_and_the_earlier_frames_are_untouched(takes_summary):
    assert [t["active"] for t in takes_summary["three"]] == [False, False, True]
    after_each = takes_summary["files_after"]
    for later in after_each[1:]:  # a take's folder after the later takes: the same files, the same bytes
        for folder, files in after_each[0].items():
            assert later[folder] == files and len(files) >= 4, folder
    final = after_each[-1]
    assert all(files is not None and sum(n.endswith(".png") for n in files) == 4 for files in final.values())


def test_takes_follow_their_source_when_it_is_renamed_or_moved(takes_summary):
    names = [t["name"] for t in takes_summary["three"]]
    assert takes_summary["after_rename"] == names  # the source is now "shot A" on channel 1
    assert takes_summary["from_a_take"] == names  # the list of a take is its source's


def test_make_active_unmutes_the_take_and_mutes_the_others(takes_summary):
    assert takes_summary["activate"]["result"] == ["FINISHED"], takes_summary["activate"]
    assert takes_summary["activated"] == [[1, True], [2, False], [3, False]]


def test_takes_survive_save_and_reopen(takes_summary):
    reopened = takes_summary["reopened"]
    assert [(t["take"], t["active"], t["prompt"], t["job"]) for t in reopened] == [
        (t["take"], t["take"] == 1, t["prompt"], t["job"]) for t in takes_summary["three"]
    ]


def test_a_preview_is_placed_like_a_take_and_marked_as_one(takes_summary):
    run = takes_summary["preview"]
    assert (run["result"], run["level"]) == (["FINISHED"], "INFO"), run
    listed = takes_summary["with_preview"]
    preview = listed[-1]
    # asked for with take 1 active, it is take 4 of the source; the source moved to channel 1: channel 2 is free
    where = (preview["take"], preview["preview"], preview["channel"], preview["start"], preview["end"])
    assert where == (4, True, 2, 47, 51), preview
    assert preview["name"] == "people riding zebras on a road (preview)" and preview["source"] == "shot A"
    assert [t["active"] for t in listed] == [False, False, False, True]
    assert sorted(takes_summary["preview_files"]) == [f"frame_{i:06d}.png" for i in range(4)] + ["v2vz.json"]


def test_the_sidebar_lists_the_takes_with_their_buttons(takes_summary):
    shown = takes_summary["panel"]
    labels = [item[1] for item in shown if item[0] == "label"]
    assert "Takes of shot A" in labels
    assert "1: people riding horses on a road" in labels and "4: people riding zebras on a road (selected)" in labels
    times = [take["time"] for take in takes_summary["with_preview"]]
    assert f"final | daemon model | {times[0]}" in labels and f"preview | daemon model | {times[3]}" in labels
    buttons = [(item[1], item[3].get("strip")) for item in shown if item[0] == "operator" and "strip" in item[3]]
    names = [take["name"] for take in takes_summary["with_preview"]]
    assert buttons == [
        ("sequencer.v2vz_take", names[0]),
        ("sequencer.v2vz_take", names[1]),
        ("sequencer.v2vz_take", names[2]),
        ("sequencer.v2vz_make_final", names[3]),  # the active take has no "Make Active"; a preview has "Make Final"
    ]
    while_final = [item[1] for item in takes_summary["panel_while_final"] if item[0] == "label"]
    assert "making its final..." in while_final and "shot A take 4 (final) -> channel 2" in while_final


def test_a_final_that_fails_leaves_the_preview_and_says_why(takes_summary):
    failed = takes_summary["final_failed"]
    assert (failed["result"], failed["level"]) == (["CANCELLED"], "ERROR"), failed
    assert "v2vz serve" in failed["message"] and "the preview stays" in failed["message"], failed
    assert takes_summary["after_failed_final"] == takes_summary["with_preview"]
    assert takes_summary["preview_files_after_failure"] == takes_summary["preview_files"]


def test_the_final_replaces_its_preview_in_place(takes_summary):
    assert takes_summary["final"]["level"] == "INFO", takes_summary["final"]
    assert takes_summary["preview_while_final"] == [True]  # the preview and its frames stay while the final runs
    preview, final = takes_summary["trimmed_preview"], takes_summary["with_final"][-1]
    assert len(takes_summary["with_final"]) == 4 and not takes_summary["preview_strip_after_final"]
    same = ("take", "channel", "start", "end", "active", "take_of", "prompt", "source_prompt", "model", "source")
    assert {key: final[key] for key in same} == {key: preview[key] for key in same}
    assert (final["start"], final["end"]) == (48, 51) and takes_summary["final_offsets"] == preview["offsets"] == [1, 0]
    assert final["preview"] is False and final["name"] == "people riding zebras on a road"
    assert final["job"] != preview["job"] and final["folder"] != preview["folder"]
    assert takes_summary["preview_folder_after_final"] is None  # the preview's frames folder is gone
    assert sorted(takes_summary["final_files"]) == [f"frame_{i:06d}.png" for i in range(4)] + ["v2vz.json"]
    assert takes_summary["final_elements"] == 4
    assert takes_summary["with_final"][:3] == takes_summary["with_preview"][:3]  # the other takes as they were
    for folder, files in takes_summary["files_at_end"].items():
        assert files == takes_summary["files_after"][-1][folder], folder  # their frames too
    refused = takes_summary["make_final_of_a_final"]
    assert refused["level"] == "ERROR" and "only a preview has a final" in refused["message"], refused


# The image-sequence check itself is plain Python (no bpy calls): test it here against the daemon's own rules.


@pytest.fixture(scope="module")
def strips(extension):
    return without_blender(extension, "strips")


@pytest.fixture(scope="module")
def jobs(extension):
    return without_blender(extension, "jobs")


def numbered_folder(folder: Path, names: list[str]) -> list[str]:
    for name in names:
        Image.new("RGB", (4, 4)).save(folder / name)
    return [str(folder / name) for name in names]


def test_sequence_check_accepts_consecutive_images(tmp_path, strips):
    problem = strips.sequence_problem
    paths = numbered_folder(tmp_path, ["f_0001.png", "f_0003.png", "f_0007.png", "f_0008.png", "g_0002.png"])
    assert problem(paths[:4]) is None  # gaps in the numbering, other prefixes beside them
    assert problem(paths[1:3]) is None and problem(paths[3:4]) is None
    assert problem(numbered_folder(tmp_path, ["still.png"])) is None  # a still on its own


def test_sequence_check_messages(tmp_path, strips):
    problem = strips.sequence_problem
    f1, f3, f7, f03, other, still = numbered_folder(
        tmp_path, ["f_1.png", "f_3.png", "f_7.png", "f_03.png", "g_5.png", "still.png"]
    )
    assert problem([f1, f7]) == f"{tmp_path} holds two frames numbered 3 (f_03.png and f_3.png): rename or remove one"
    (tmp_path / "f_03.png").unlink()
    assert problem([f1, f7]) == (
        "f_3.png lies between f_1.png and f_7.png but is not in the strip: v2vz reads every numbered image in order, "
        "so move the strip's images to a folder of their own"
    )
    assert problem([f3, f1]) == "f_1.png follows f_3.png but its number is not higher: the images must go up in number"
    assert problem([f1, f1]) == "f_1.png follows f_1.png but its number is not higher: the images must go up in number"
    assert problem([f1, other]) == "g_5.png is not numbered like f_1.png (f_<number>.png)"
    assert (
        problem([still, f1])
        == "still.png has no frame number in its name, so v2vz would read it as a single still image"
    )
    assert problem([f1, str(tmp_path / "f_2.png")]) == f"its image {tmp_path / 'f_2.png'} does not exist"
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    (moved,) = numbered_folder(elsewhere, ["f_5.png"])
    assert problem([f1, f3, moved]) == f"f_5.png is not in the folder of f_1.png ({tmp_path})"
    (tmp_path / "clip_1.mp4").write_bytes(b"")
    assert problem([str(tmp_path / "clip_1.mp4")]) == (
        "clip_1.mp4 is not an image v2vz reads (.png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp)"
    )
    assert problem([]) == "it shows no images"


def test_sequence_check_agrees_with_the_daemon(tmp_path, strips):
    """For random selections of a messy folder: accepted exactly when the daemon's sequence from the first file
    starts with the selection (the same files, in the same order)."""
    job = strips
    assert job.IMAGE_SUFFIXES == IMAGE_SUFFIXES
    names = [f"s_{n:03d}.png" for n in (1, 2, 4, 5, 9, 10, 11, 30)]
    names += ["s_12.png", "s_007.jpg", "t_003.png", "s_006_v2.png", "S_008.png", "poster.png"]
    paths = numbered_folder(tmp_path, names)
    rng = random.Random(5)
    accepted = 0
    for _ in range(400):
        chosen = rng.sample(paths, rng.randint(1, 5))
        if rng.random() < 0.7:
            chosen.sort(key=lambda p: (len(p), p))
        try:
            daemon = [str(p) for p in sequence_files(Path(chosen[0]))]
        except V2vzError:
            daemon = []
        agrees = daemon[: len(chosen)] == chosen
        accepted += agrees
        assert (job.sequence_problem(chosen) is None) == agrees, (chosen, daemon, job.sequence_problem(chosen))
    assert accepted >= 20  # the selections cover both outcomes


def test_the_client_that_built_the_extension_is_its_default(jobs, monkeypatch, tmp_path):
    monkeypatch.delenv("V2VZ_CLIENT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `v2vz` on PATH either
    assert jobs.find_client() == V2VZ  # v2vz-client.txt in the zip
    assert jobs.find_client(sys.executable) == sys.executable  # the preference comes first
    monkeypatch.setenv("V2VZ_CLIENT", sys.executable)
    assert jobs.find_client() == sys.executable  # then $V2VZ_CLIENT


def test_the_client_command_carries_only_the_options_that_were_set(jobs):
    request = jobs.EditRequest("/clips/a.mp4", 10, 40, "a jeep", "a car", "/out/x")
    base = ["v2vz", "edit", "/clips/a.mp4", "--prompt", "a jeep", "--source-prompt", "a car"]
    base += ["--start", "10", "--frames", "40", "--out", "/out/x"]
    assert request.command("v2vz") == [*base, "--events", "jsonl"]
    chosen = dataclasses.replace(request, steps=20, size=256, window=8, fast=True, preset="published")
    assert chosen.command("v2vz") == [
        *base,
        "--preset",
        "published",
        "--steps",
        "20",
        "--size",
        "256",
        "--window",
        "8",
        "--fast",
        "--events",
        "jsonl",
    ]


def test_a_preview_and_a_final_have_their_own_command_lines(jobs):
    request = jobs.EditRequest("/clips/a.mp4", 10, 40, "a jeep", "a car", "/out/x", model="tiny", preview=True)
    base = ["v2vz", "edit", "/clips/a.mp4", "--prompt", "a jeep", "--source-prompt", "a car"]
    base += ["--start", "10", "--frames", "40", "--out", "/out/x"]
    assert request.command("v2vz") == [*base, "--model", "tiny", "--preview", "--events", "jsonl"]
    flow = dataclasses.replace(request, method="flowedit", model="tiny-wan", preview=False)  # the sidebar's Method
    assert flow.command("v2vz") == [*base, "--method", "flowedit", "--model", "tiny-wan", "--events", "jsonl"]
    final = jobs.FinalRequest("0123abcd", "/out/y")
    assert final.command("v2vz") == [
        "v2vz",
        "final",
        "0123abcd",
        "--out",
        "/out/y",
        "--keep-preview",
        "--events",
        "jsonl",
    ]


@pytest.fixture(scope="module")
def takes_module(extension):
    return without_blender(extension, "takes")


def test_take_names_are_the_prompt_cut_to_a_readable_length(takes_module):
    name = takes_module.take_name
    assert name("people riding horses") == "people riding horses"
    assert name("  people   riding\nhorses ") == "people riding horses"
    assert name("people riding horses", preview=True) == "people riding horses (preview)"
    long = "a watercolor painting of people riding bicycles through a misty autumn forest at dawn"
    assert name(long) == "a watercolor painting of people riding..."
    assert name("x" * 100) == "x" * 40 + "..."
    assert name("") == "v2vz"
    assert name("é" * 100) == "é" * 28 + "..."  # Blender keeps 63 bytes of a name: 60 leave room for ".001"
    for prompt in ("é" * 100, "日本の街を走る自転車に乗った人々、水彩画風、秋の霧の朝、細部まで美しい", long):
        for preview in (False, True):
            assert len(name(prompt, preview).encode("utf-8")) <= takes_module.NAME_BYTES
            assert name(prompt, preview).endswith(("...", "... (preview)"))


def test_only_what_a_job_wrote_is_deleted_with_its_frames(takes_module, tmp_path):
    ours = tmp_path / "ours"
    ours.mkdir()
    for name in ("frame_000000.png", "frame_000001.png", "v2vz.json"):
        (ours / name).write_bytes(b"x")
    assert takes_module.remove_frames(str(ours)) == ["frame_000000.png", "frame_000001.png", "v2vz.json"]
    assert not ours.exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("frame_000000.png", "notes.txt", "frame_a.png", "shot_0001.png"):
        (shared / name).write_bytes(b"x")
    assert takes_module.remove_frames(str(shared)) == ["frame_000000.png"]
    assert sorted(p.name for p in shared.iterdir()) == ["frame_a.png", "notes.txt", "shot_0001.png"]
    assert takes_module.remove_frames(str(tmp_path / "gone")) == []
