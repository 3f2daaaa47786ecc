"""`v2vz timeline` with local edits (issue 25): `matte:` and the local-edit options in markers and metadata, the
matte carried into each clip's job, lined up with the clip's media or with the cut (docs/timelines.md)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from v2vz.timeline import prompts

from .test_timeline import MEDIA_FRAMES, RT, TR, clip, clips_by_name, error_lines, invoke, make_clip, video_tracks

BOXES = "source: a red box\nprompt: a blue box"
LOCAL = BOXES + "\noptions: --edit-only box --self-replace 0.4"


def marked(text: str) -> otio.schema.Clip:
    made = otio.schema.Clip(name="shot")
    made.markers.append(otio.schema.Marker(name=text, marked_range=TR(RT(0, 24), RT(0, 24))))
    return made


def test_markers_and_metadata_give_a_matte_and_the_local_edit_options():
    found = prompts.from_markers(marked(LOCAL + "\nmatte: mattes/box.mov"))
    assert (found.source, found.prompt, found.matte, found.matte_start) == (
        "a red box",
        "a blue box",
        "mattes/box.mov",
        0,
    )
    assert found.options == {"edit_only": "box", "self_replace": "0.4"}
    one_line = prompts.from_markers(marked("source: a car; prompt: a jeep; matte: /m/car.mov"))
    assert (one_line.prompt, one_line.matte) == ("a jeep", "/m/car.mov")
    flags = prompts.from_markers(marked("source: a car; prompt: a jeep; options: --matte 'car m.mov' --matte-start 3"))
    assert (flags.matte, flags.matte_start, flags.options) == ("car m.mov", 3, {})
    data = {
        "source": "a car",
        "prompt": "a jeep",
        "matte": "car.mov",
        "options": {"edit_only": "car", "matte_start": 2},
    }
    meta = otio.schema.Clip(name="shot", metadata={"v2vz": data})
    found = prompts.from_metadata(meta)
    assert (found.matte, found.matte_start, found.options) == ("car.mov", 2, {"edit_only": "car"})


@pytest.mark.parametrize(
    "text, words",
    [
        ("matte: a.mov\noptions: --matte b.mov", ["gives matte twice", "'a.mov'", "'b.mov'"]),
        ("options: --matte-start 3", ["matte start is for a matte", "matte: PATH"]),
        ("matte: a.mov\noptions: --matte-start -1", ["--matte-start takes a whole number", "'-1'"]),
    ],
)
def test_a_bad_matte_or_local_option_is_the_clips_reason(text: str, words: list[str]):
    with pytest.raises(prompts.BadPrompts) as caught:
        prompts.from_markers(marked("source: a car\nprompt: a jeep\n" + text))
    for word in words:
        assert word in str(caught.value), str(caught.value)


def timeline_with_mattes(folder: Path) -> Path:
    """A 30-frame shot cut five times, each with another matte; written as `folder/cut.otio`."""
    media = make_clip(folder / "shot.mov", Fraction(24))
    (folder / "mattes").mkdir()
    make_clip(folder / "mattes" / "plate.mov", Fraction(24), MEDIA_FRAMES)  # a roto of the whole file
    make_clip(folder / "cut.mov", Fraction(24), 6)  # rendered for one cut only
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(folder / "still.png")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for name, first, count, extra in [
        ("plate", 4, 8, "matte: mattes/plate.mov\noptions: --edit-only box --self-replace 0.4"),
        ("cut", 10, 6, "options: --edit-only box --self-replace 0.4 --matte cut.mov"),
        ("still", 20, 4, "matte: still.png\noptions: --edit-only box --self-replace 0.4"),
        ("whole", 4, 8, "options: --edit-only box --self-replace 0.4"),  # the plate's range, no matte: its own job
        ("gone", 0, 4, "matte: gone.mov"),
        ("boat", 24, 4, "options: --edit-only boat"),
        ("far", 26, 4, "options: --self-replace 2"),
    ]:
        track.append(clip(name, media, "24", first, count, f"{BOXES}\n{extra}"))
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(folder / "cut.otio"))
    return folder / "cut.otio"


def test_each_clip_gets_its_matte_lined_up_with_its_media_or_its_cut(fake, tmp_path: Path):
    cut = timeline_with_mattes(tmp_path)
    result = invoke(cut, "--out", tmp_path / "edited.otio", "--steps", "2")
    assert result.exit_code == 0, result.stderr
    assert not error_lines(result), result.stderr
    missing = f"its matte {tmp_path / 'gone.mov'} does not exist: fix its `matte:` or put the file there"
    assert f"left alone: gone (track 'V1' at 00:00:01:02): {missing}" in result.stderr, result.stderr
    assert "edit-only word(s) 'boat' are in neither prompt" in result.stderr
    assert "left alone: far" in result.stderr and "'self replace: 2'" in result.stderr, result.stderr
    jobs = {entry["job"].start: entry["job"] for entry in fake.jobs.values() if entry["job"].matte is not None}
    assert {start: (job.matte, job.matte_start) for start, job in jobs.items()} == {
        4: (tmp_path / "mattes" / "plate.mov", 4),  # the plate's frame N goes with the media's frame N
        10: (tmp_path / "cut.mov", 0),  # as long as the cut: from its first frame
        20: (tmp_path / "still.png", 0),  # one image: every frame
    }
    assert all(job.options.edit_only == "box" and job.options.self_replace == 0.4 for job in jobs.values())
    assert len(fake.jobs) == 4  # `whole` asks for another edit than `plate` (no matte): a job of its own
    out = otio.adapters.read_from_file(str(tmp_path / "edited.otio"))
    edits = clips_by_name(video_tracks(out)[-1])
    plate = next(edit for name, edit in edits.items() if name.startswith("plate "))
    assert (plate.metadata["v2vz"]["matte"], plate.metadata["v2vz"]["matte_start"]) == (
        str(tmp_path / "mattes" / "plate.mov"),
        4,
    )


def test_dry_run_says_which_matte_frame_goes_with_the_clip(tmp_path: Path):
    cut = timeline_with_mattes(tmp_path)
    result = invoke(cut, "--out", tmp_path / "edited.otio", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "would edit plate: frames 4..11 of shot.mov (24 fps), 'a red box' -> 'a blue box', matte plate.mov " in (
        result.stderr.replace("\n", " ")
    ), result.stderr
    assert "matte plate.mov from its frame 4" in result.stderr.replace("\n", " ")
