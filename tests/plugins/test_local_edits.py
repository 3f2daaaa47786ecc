"""Local edits in the host plugins (issue 25): the `v2vz edit` flags both hosts build (v2vz_host.LocalEdit), the
`mask` progress text, the Blender matte strip (movie, image or mask strip above the source) and "show mask", and the
Resolve matte (the clip on the track above, or a marker's `matte:` line) and its masks imported into the media pool.

No daemon: a fake `v2vz` (test_host_client.fake_client) logs its arguments and writes what the real one would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import CLIPS
from ..fake_resolve import FakeTimelineItem, video_item
from .test_blender_extension import BLENDERS, CLIENT_SCENARIO_START, bpy_python, run_scenario, unpack_extension
from .test_host_client import calls, fake_client, host, script  # noqa: F401 - fixtures
from .test_resolve_script import BIKES, NOTE, project_with_clip

CLIP = str(CLIPS / "bikes.mp4")  # 640x272, 25 fps, 250 frames

# A fake `v2vz edit`: the frames (copies of one PNG) into --out, the masks into --save-mask numbered like the
# source's frames, a `mask` progress event that names a frame with nothing to edit, then `done`.
LOCAL_CLIENT = """
import os, shutil
args = sys.argv[1:]
def value(flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default
out, frames, start = value("--out"), int(value("--frames")), int(value("--start"))
print(json.dumps({"type": "submitted", "job_id": "local0000001", "position": 0}), flush=True)
if value("--save-mask"):
    os.makedirs(value("--save-mask"), exist_ok=True)
    for index in range(frames):
        shutil.copy(PNG, os.path.join(value("--save-mask"), "mask_%06d.png" % (start + index)))
reason = "nothing to edit in frame(s) 1..1 (the matte leave(s) them out): they are left as shot"
mask = {"type": "progress", "stage": "mask", "step": frames - 1, "total": frames, "window": 1, "windows": 1}
print(json.dumps({"job_id": "local0000001", **mask, "reason": reason}), flush=True)
paths = []
for index in range(frames):
    paths.append(os.path.join(out, "frame_%06d.png" % index))
    shutil.copy(PNG, paths[-1])
    print(json.dumps({"job_id": "local0000001", "type": "frame", "index": index, "path": paths[-1]}), flush=True)
print(json.dumps({"job_id": "local0000001", "type": "done", "frame_paths": paths}))
"""


def local_client(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "grey.png"
    Image.new("L", (8, 4), 128).save(png)
    return fake_client(folder, f"PNG = {str(png)!r}\n" + LOCAL_CLIENT)


# ---------------------------------------------------------------------------------------------------------------
# v2vz_host: the flags and the mask progress text, the same in every host


def test_a_local_edit_passes_only_the_flags_that_were_set(host):  # noqa: F811
    assert host.LocalEdit().args() == [] and not host.LocalEdit(self_replace=0.4).local
    chosen = host.LocalEdit(
        edit_only="  car   wheels ",
        edit_only_threshold=0.25,
        matte="/mattes/car.mov",
        matte_start=27,
        matte_feather=3,
        self_replace=0.4,
        save_mask="/out/x-mask",
    )
    assert chosen.problem() == ""
    assert chosen.args() == [
        "--edit-only", "car wheels", "--edit-only-threshold", "0.25", "--matte", "/mattes/car.mov",
        "--matte-start", "27", "--matte-feather", "3.0", "--self-replace", "0.4", "--save-mask", "/out/x-mask",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"self_replace": 1.5}, "self-replace is a fraction of the steps between 0 and 1, not 1.5"),
        ({"edit_only_threshold": 2.0}, "the edit-only threshold is a share between 0 and 1, not 2"),
        ({"matte_start": 3}, "a matte start or feather needs a matte"),
        ({"save_mask": "/m"}, "a mask is saved for a local edit only: give edit-only words or a matte too"),
    ],
)
def test_what_the_client_would_refuse_is_said_before_it_runs(host, options, words):  # noqa: F811
    assert host.LocalEdit(**options).problem() == words


def test_the_matte_frame_that_goes_with_the_ranges_first_frame(host):  # noqa: F811
    # the range: timeline 47..50; the matte from timeline 25 (its frame 5 there) for 245 frames: its frame 27 at 47
    assert host.aligned_matte_frame(47, 4, 25, 245, 5) == 27
    assert host.aligned_matte_frame(47, 4, 47, 4, 0) == 0
    with pytest.raises(ValueError, match=r"it covers timeline frames 49..52, the edit needs 47..50"):
        host.aligned_matte_frame(47, 4, 49, 4, 0)
    assert host.mask_files("/m", 50, 2) == ["/m/mask_000050.png", "/m/mask_000051.png"]


def test_the_mask_stage_says_how_many_frames_are_edited_and_which_are_not(host):  # noqa: F811
    state = host.JobTracker()
    state.apply({"type": "progress", "stage": "mask", "step": 6, "total": 8, "window": 2, "windows": 5})
    assert state.status == "window 2/5: 6 of 8 frames to edit" and state.progress == 0.75
    reason = "nothing to edit in frame(s) 3..5 (the matte leave(s) them out): they are left as shot"
    state.apply(
        {"type": "progress", "stage": "mask", "step": 5, "total": 8, "window": 1, "windows": 1, "reason": reason}
    )
    assert state.status == f"5 of 8 frames to edit: {reason}" and state.outcome == ""  # not an error


# ---------------------------------------------------------------------------------------------------------------
# Blender: the matte from a strip above the source, "show mask"

BLENDER_SCRIPT = (
    CLIENT_SCENARIO_START
    + r"""
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 27, 100
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(work, "local.blend"))
    scene = compat.sequencer_scene()
    editor = scene.sequence_editor_create()
    movie = compat.strips(editor).new_movie("bikes", clip, 2, 10)
    movie.frame_offset_start, movie.frame_offset_end = 37, 209  # source frames 37..40 at timeline 47..50
    matte = compat.strips(editor).new_movie("matte", clip, 3, 20)
    matte.frame_offset_start = 5  # its frame 27 plays at timeline 47
    os.makedirs(os.path.join(work, "mattes"))
    names = ["shot_%04d.png" % index for index in range(10)]
    for name in names:
        open(os.path.join(work, "mattes", name), "wb").write(b"png")
    images = compat.new_image(editor, "images", os.path.join(work, "mattes", names[0]), 4, 45)  # 45..54
    for name in names[1:]:
        images.elements.append(name)
    mask = bpy.data.masks.new("car")
    spline = mask.layers.new(name="car").splines.new()
    spline.points.add(4)
    for point, co in zip(spline.points, [(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7)]):
        point.co = co
    spline.use_cyclic = True
    compat.strips(editor).new_mask(name="mask", mask=mask, channel=5, frame_start=40)
    short = compat.strips(editor).new_movie("short", clip, 6, 49)  # starts after the range's first frame
    compat.strips(editor).new_movie("below", clip, 1, 0)
    compat.new_effect(editor, "colour", "COLOR", 7, 40, 20)

    def local(options, preview=False):
        try:
            made = jobs.local_edit(scene, movie, options, 37, 4, os.path.join(work, "v2vz", "direct"), preview)
        except strips.ReportError as exc:
            return {"error": str(exc)}
        return {"args": made.args()}

    for name in ("matte", "images", "mask", "short", "below", "colour", "nothing"):
        summary[name] = local({"matte_strip": name})
    summary["show_mask_alone"] = local({"show_mask": True})
    summary["preview_mask"] = local({"edit_only": "horses", "show_mask": True}, preview=True)
    summary["words"] = local({"edit_only": " horses ", "self_replace": 0.4})
    summary["feather_alone"] = local({"edit_only": "horses", "matte_feather": 2.0})

    options = dict(prompt="people riding horses", source_prompt="people riding bikes", edit_only="horses",
                   self_replace=0.4, matte_strip="matte", show_mask=True)
    summary["result"] = sorted(v2vz_blender.run_operator(None, bpy.context, movie, options))
    summary["report"] = dict(v2vz_blender.LAST_REPORT)
    summary["strips"] = {
        s.name: {"type": s.type, "channel": s.channel, "start": compat.left_handle(s), "end": compat.right_handle(s),
                 "files": [e.filename for e in s.elements] if s.type == "IMAGE" else [],
                 "directory": bpy.path.abspath(getattr(s, "directory", "")), "mask_of": s.get("v2vz_mask_of", "")}
        for s in compat.strips(editor)
    }
finally:
    v2vz_blender.unregister()
print("SUMMARY " + json.dumps(summary), flush=True)
"""
)


@pytest.fixture(scope="module", params=list(BLENDERS), ids=[f"blender-{v}" for v in BLENDERS])
def blender(request, tmp_path_factory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("blender-local")
    extension = unpack_extension(work / "extension")
    client = local_client(work / "client")  # not work/v2vz: that is where the .blend's takes go
    args = [str(extension), CLIP, str(work), str(client)]
    return run_scenario(bpy_python(request.param), work / "local.py", BLENDER_SCRIPT, args, dict(os.environ)), client


@pytest.fixture(scope="module")
def blender_summary(blender) -> dict:
    return blender[0]


def test_a_movie_strip_above_gives_its_file_and_the_frame_aligned_with_the_range(blender_summary):
    assert blender_summary["matte"] == {"args": ["--matte", CLIP, "--matte-start", "27"]}


def test_an_image_strip_above_gives_the_image_aligned_with_the_range(blender_summary):
    (matte,) = [arg for arg in blender_summary["images"]["args"] if arg.endswith(".png")]
    assert blender_summary["images"]["args"] == ["--matte", matte] and Path(matte).name == "shot_0002.png"


def test_a_mask_strip_is_rendered_to_grey_pngs_numbered_by_timeline_frame(blender_summary):
    args = blender_summary["mask"]["args"]
    assert args[0] == "--matte" and len(args) == 2, args
    first = Path(args[1])
    assert first.name == "matte_000047.png" and first.parent.name == "direct-matte"
    assert sorted(p.name for p in first.parent.iterdir()) == [f"matte_{n:06d}.png" for n in range(47, 51)]
    pixels = np.asarray(Image.open(first))
    assert pixels.shape == (27, 64) and pixels[13, 32] == 255 and pixels[1, 1] == 0  # inside white, outside black


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (
            "short",
            "the matte 'short' does not cover the source: it covers timeline frames 49..298, the edit needs 47..50",
        ),
        ("below", "the matte 'below' is on channel 1, not above 'bikes' (channel 2): move it to a channel above"),
        ("colour", "the matte 'colour' is a color strip: choose a movie, image or mask strip"),
        ("nothing", "no strip 'nothing' for the matte"),
    ],
)
def test_a_matte_strip_that_cannot_be_used_is_refused_in_one_line(blender_summary, name, words):
    assert words in blender_summary[name]["error"] and "\n" not in blender_summary[name]["error"]


def test_words_self_replace_and_show_mask(blender_summary):
    assert blender_summary["words"] == {"args": ["--edit-only", "horses", "--self-replace", "0.4"]}
    assert blender_summary["feather_alone"] == {"error": "v2vz: a matte start or feather needs a matte"}
    assert "show mask needs a local edit" in blender_summary["show_mask_alone"]["error"]
    assert blender_summary["preview_mask"] == {"args": ["--edit-only", "horses"]}  # a preview saves no masks


def test_the_take_runs_with_the_flags_and_shows_its_mask_above_it(blender):
    summary, client = blender
    assert summary["result"] == ["FINISHED"] and summary["report"]["level"] == "INFO", summary["report"]
    (call,) = calls(client)
    save_mask = call[call.index("--save-mask") + 1]
    assert call[call.index("--start") :][:4] == ["--start", "37", "--frames", "4"]
    assert call[call.index("--edit-only") :] == [
        "--edit-only", "horses", "--matte", CLIP, "--matte-start", "27", "--self-replace", "0.4",
        "--save-mask", save_mask, "--events", "jsonl",
    ]  # fmt: skip
    take = summary["strips"]["people riding horses"]
    mask = summary["strips"]["people riding horses (mask)"]
    assert (take["channel"], take["start"], take["end"]) == (8, 47, 51)  # channels 3..7 hold mattes over 47..50
    assert (mask["type"], mask["channel"], mask["start"], mask["end"]) == ("IMAGE", 9, 47, 51)
    assert mask["files"] == [f"mask_{n:06d}.png" for n in range(37, 41)] and mask["mask_of"] == "people riding horses"
    assert Path(mask["directory"]) == Path(save_mask) and Path(save_mask).name.endswith("-mask")
    assert "its mask is on channel 9" in summary["report"]["message"]


# ---------------------------------------------------------------------------------------------------------------
# Resolve: the matte from the track above or a marker's `matte:` line; the masks into the media pool


def resolve_run(script, tmp_path, monkeypatch, note, above=None):  # noqa: F811
    """The script on bikes.mp4 (V1, source frames 50..55 at record 90100) with `note` on its marker and `above` put
    on V2; returns (result, the client's edit call, project)."""
    client = local_client(tmp_path)
    monkeypatch.setenv("V2VZ_CLIENT", str(client))
    resolve, project, timeline, item, _ = project_with_clip(note=note)
    if above is not None:
        timeline.put(above, track=2)
    (result,) = script["main"](resolve)
    return result, (calls(client) or [[]])[-1], project


def test_resolve_takes_the_matte_from_the_clip_on_the_track_above(script, tmp_path, monkeypatch):  # noqa: F811
    matte = FakeTimelineItem("car matte", 90098, 10, video_item("car.mov", BIKES, 25, 250), source_start=12)
    note = NOTE + "\nmatte: above\nedit only: horses\nself replace: 0.4"
    result, call, _ = resolve_run(script, tmp_path, monkeypatch, note, matte)
    assert result["state"] == "placed", result
    assert call[call.index("--edit-only") : call.index("--events")] == [
        "--edit-only", "horses", "--matte", BIKES, "--matte-start", "14", "--self-replace", "0.4",
    ]  # fmt: skip


def test_resolve_takes_an_image_sequence_matte_above_from_the_aligned_image(script, tmp_path, monkeypatch):  # noqa: F811
    media = video_item("car_[0100-0199].png", "/mattes/car_[0100-0199].png", 25, 100)
    matte = FakeTimelineItem("car matte", 90100, 6, media, source_start=3)
    result, call, _ = resolve_run(script, tmp_path, monkeypatch, NOTE + "\nmatte: above", matte)
    assert result["state"] == "placed", result
    assert call[call.index("--matte") : call.index("--events")] == ["--matte", "/mattes/car_0103.png"]


@pytest.mark.parametrize(
    ("above", "words"),
    [
        (None, "'bikes.mp4' asks for the matte above it, but video track 2 has no clip over its frames"),
        (
            FakeTimelineItem("late", 90102, 10, video_item("m.mov", BIKES, 25, 250)),
            "the matte 'late' over 'bikes.mp4' on video track 2: it covers timeline frames 90102..90111, the edit "
            "needs 90100..90105",
        ),
        (FakeTimelineItem("slow", 90100, 6, video_item("m.mov", BIKES, 30, 250)), "'slow' is 30 fps on a 25 fps"),
    ],
)
def test_resolve_refuses_a_matte_above_that_cannot_be_used(script, tmp_path, monkeypatch, above, words):  # noqa: F811
    result, call, _ = resolve_run(script, tmp_path, monkeypatch, NOTE + "\nmatte: above", above)
    assert result["state"] == "refused" and words in result["message"], result
    assert call == []  # nothing was submitted


def test_resolve_takes_the_matte_from_a_marker_line_and_imports_the_masks(script, tmp_path, monkeypatch):  # noqa: F811
    matte = tmp_path / "car.png"
    Image.new("L", (64, 27), 255).save(matte)
    note = NOTE + f"\nMatte: {matte}\nshow-mask: yes"
    result, call, project = resolve_run(script, tmp_path, monkeypatch, note)
    assert result["state"] == "placed" and result["mask"] == "v2vz mask: people riding horses on a road", result
    save_mask = call[call.index("--save-mask") + 1]
    assert call[call.index("--matte") : call.index("--events")] == ["--matte", str(matte), "--save-mask", save_mask]
    (bin_,) = [f for f in project.media_pool.GetRootFolder().GetSubFolderList() if f.GetName() == "v2vz"]
    (masks,) = [clip for clip in bin_.GetClipList() if clip.GetName() == result["mask"]]
    pattern = masks.GetClipProperty("File Path")
    assert pattern == str(Path(save_mask) / "mask_%06d.png") and masks.GetClipProperty("Frames") == "6"
    assert Path(pattern % 50).is_file() and Path(pattern % 55).is_file()  # numbered like the source's frames
    job = json.loads(next(m for m in result_markers(project) if m["name"] == "v2vz job")["customData"])
    assert job["mask_dir"] == save_mask  # a re-attach imports them too


def result_markers(project) -> list[dict]:
    item = project.timeline.GetItemListInTrack("video", 1)[1]
    return list(item.GetMarkers().values())


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ("\nmatte: /no/such/matte.mov", "the matte /no/such/matte.mov of 'bikes.mp4' does not exist"),
        ("\nshow mask: yes", "'bikes.mp4': show mask needs a local edit"),
        ("\nshow mask: maybe", "says 'show mask: maybe': write 'show mask: yes' or 'show mask: no'"),
        ("\nedit only: horses\nself replace: lots", "says 'self replace: lots': write a fraction of the steps"),
        ("\nedit only: horses\nself replace: 2", "the v2vz marker on 'bikes.mp4': it says 'self replace: 2'"),
    ],
)
def test_resolve_refuses_local_lines_it_cannot_use(script, tmp_path, monkeypatch, lines, words):  # noqa: F811
    result, call, _ = resolve_run(script, tmp_path, monkeypatch, NOTE + lines)
    assert result["state"] == "refused" and words in result["message"], result
    assert call == []


def test_resolve_shows_the_mask_stage(script, capsys):  # noqa: F811
    progress = script["Progress"]("shot")
    reason = "nothing to edit in frame(s) 3..5 (the matte leave(s) them out): they are left as shot"
    progress({"type": "progress", "stage": "mask", "step": 5, "total": 8, "window": 2, "windows": 3, "reason": reason})
    assert capsys.readouterr().out == f"v2vz: 'shot': window 2/3: 5 of 8 frames to edit: {reason}\n"
