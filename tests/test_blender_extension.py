"""The Blender VSE extension in real Blender (`bpy` from PyPI, its own venv) against a real daemon (`tiny` model).

The Blender side runs as a script in that venv's Python; it prints one `SUMMARY {...}` line that these tests check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CLIPS, serve_tiny

REPO = Path(__file__).resolve().parents[1]
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
    active = v2vz_blender.start_job(bpy.context, movie, OPTS)
    v2vz_blender.JOBS[active.key] = active
    lengths = []
    while v2vz_blender.drain_jobs():
        strip = v2vz_blender._result_strip(active)
        lengths.append(compat.duration(strip) if strip is not None else 0)
        time.sleep(0.02)
    lengths.append(compat.duration(v2vz_blender._result_strip(active)))
    summary["streamed"] = {
        "lengths": sorted(set(lengths)), "channel": active.channel, "report": dict(v2vz_blender.LAST_REPORT)
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


@pytest.fixture(scope="module", params=list(BLENDERS), ids=[f"blender-{v}" for v in BLENDERS])
def summary(request, served, tmp_path_factory) -> dict:
    python = bpy_python(request.param)
    env, _ = served
    work = tmp_path_factory.mktemp("blender")
    script = work / "scenario.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**env, "V2VZ_CLIENT": V2VZ}
    done = subprocess.run(
        [str(python), str(script), str(REPO / "plugins" / "blender"), str(CLIP), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads(lines[-1][len("SUMMARY ") :])


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
    assert streamed["lengths"][-1] == 4 and set(streamed["lengths"]) <= {0, 1, 2, 3, 4}, streamed


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
