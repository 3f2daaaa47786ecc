"""Issue 24 items 4 and 5: one torch-free media probe for the engine and `v2vz timeline`, and a timeline run that
is handed its display (as the watch folder is handed its Reporter) instead of printing from the command."""

from __future__ import annotations

import json
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("opentimelineio")

import opentimelineio as otio  # noqa: E402

from v2vz.api.errors import InvalidArgument  # noqa: E402
from v2vz.api.job import EditOptions  # noqa: E402
from v2vz.timeline import media as timeline_media  # noqa: E402
from v2vz.timeline import state as run_state  # noqa: E402
from v2vz.timeline.run import EditsFailed, Settings, run, write_output  # noqa: E402
from v2vz.timeline.state import RunState  # noqa: E402
from v2vz_engine import media as engine_media  # noqa: E402

from ..media_kit import make_clip  # noqa: E402


def portrait_clip(path: Path) -> Path:
    """A 64x48 clip stored sideways, whose display matrix shows it turned a quarter (48x64), as a phone's is."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_the_timeline_sees_a_turned_clip_at_its_displayed_size_as_the_engine_does(tmp_path: Path) -> None:
    path = portrait_clip(tmp_path / "portrait.mp4")
    engine = engine_media.probe(path)
    facts = timeline_media.probe(path)
    assert (engine.width, engine.height, engine.upright) == (48, 64, "cclock")
    assert (facts.width, facts.height, facts.frames, facts.fps) == (48, 64, 4, Fraction(24))


def test_the_timeline_probes_an_image_sequence_as_the_engine_reads_it(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(5):
        Image.new("RGB", (40, 30), (index, 0, 0)).save(folder / f"f_{index:03d}.png")
    engine = engine_media.probe(folder)
    facts = timeline_media.probe(folder)
    assert engine.is_sequence
    assert (engine.frame_count, engine.fps, engine.width, engine.height) == (5, Fraction(24), 40, 30)
    assert (facts.frames, facts.fps, facts.width, facts.height) == (5, Fraction(24), 40, 30)


def test_a_timeline_media_problem_is_the_engines_one_line_about_that_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.mov"
    text.write_text("not a video")
    with pytest.raises(timeline_media.MediaProblem) as caught:
        timeline_media.probe(text)
    assert str(caught.value).startswith(f"its media {text} cannot be read as video (")
    assert "\n" not in str(caught.value)
    with pytest.raises(timeline_media.MediaProblem, match="does not exist \\(relink it in the editor"):
        timeline_media.probe(tmp_path / "gone.mov")


def test_engine_names_are_the_probe_packages_own() -> None:
    from v2vz.media import image_sequence, info, probe, timecode
    from v2vz_engine.media import image_sequence as engine_sequence
    from v2vz_engine.media import info as engine_info
    from v2vz_engine.media import timecode as engine_timecode
    from v2vz_engine.media import video

    assert engine_media.probe is probe.probe and video.probe_video is probe.probe_video
    assert video.upright_turn is probe.upright_turn and engine_info.MediaInfo is info.MediaInfo
    assert engine_timecode.to_frames is timecode.to_frames
    assert engine_sequence.sequence_files is image_sequence.sequence_files


class RecordingDisplay:
    """A Display that keeps what a run shows, as a host other than the command would."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        self.lines.append(text)

    def bars(self, records):  # a dry run or a failed write follows no job
        raise AssertionError("no job is followed here")


@contextmanager
def no_daemon():
    raise AssertionError("a dry run never connects")
    yield


def frames_at_24(first: int, count: int) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(otio.opentime.RationalTime(first, 24.0), otio.opentime.RationalTime(count, 24.0))


def marked_timeline(tmp_path: Path) -> Path:
    """A one-clip timeline: frames 2..7 of a 12-frame clip, marked for v2vz."""
    clip_path = make_clip(tmp_path / "shot.mp4", frames=12)
    reference = otio.schema.ExternalReference(
        target_url=clip_path.as_uri(),
        available_range=frames_at_24(0, 12),
    )
    shot = otio.schema.Clip(
        name="shotA",
        media_reference=reference,
        source_range=frames_at_24(2, 6),
    )
    shot.markers.append(
        otio.schema.Marker(
            name="source: a red box; prompt: a blue cat",
            marked_range=frames_at_24(3, 0),
        )
    )
    timeline = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(shot)
    timeline.tracks.append(track)
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def settings_for(source: Path, out: Path) -> Settings:
    return Settings(
        source=source,
        out=out,
        prompt_from="any",
        track="v2vz",
        media_dir=None,
        container="mov",
        rate=None,
        model="",
        options=EditOptions(),
        audio=False,
    )


def test_a_dry_run_shows_its_plan_through_the_display_it_is_given(tmp_path: Path, capsys) -> None:
    settings = settings_for(marked_timeline(tmp_path), tmp_path / "cut-v2vz.otio")
    assert settings.media_dir == tmp_path / "cut-v2vz-media"
    display = RecordingDisplay()
    run(settings, display, no_daemon, wait=True, dry_run=True)
    assert display.lines[0].startswith("would edit shotA")
    assert display.lines[-1] == "1 edit(s), 0 clip(s) left alone; nothing submitted (--dry-run)"
    assert capsys.readouterr() == ("", "")  # the run itself prints nothing
    assert not settings.out.exists()


def recorded_run(source: Path, settings: Settings, edits: list[run_state.EditRecord]) -> RunState:
    """The run record a run of `source` keeps beside OUT, written there as a run writes it."""
    recorded = run_state.RunState(
        input=str(source),
        input_sha256=run_state.file_sha256(source),
        output=str(settings.out),
        track="v2vz",
        media_dir=str(settings.media_dir),
        container="mov",
        created=0.0,
        edits=edits,
    )
    run_state.write_state(run_state.state_path(settings.out), recorded)
    return recorded


def test_a_run_of_only_failed_edits_writes_nothing_and_says_so(tmp_path: Path) -> None:
    source = marked_timeline(tmp_path)
    settings = settings_for(source, tmp_path / "cut-v2vz.otio")
    state_file = run_state.state_path(settings.out)
    record = run_state.EditRecord(  # as a run records a job the daemon ran and that failed
        job_id="job-1",
        take=1,
        output=str(tmp_path / "shot-v2vz-t1.mov"),
        sidecar=str(tmp_path / "shot-v2vz-t1.mov.v2vz.json"),
        source=str(tmp_path / "shot.mp4"),
        start=2,
        frames=6,
        prompt="a blue cat",
        source_prompt="a red box",
        model="tiny",
        options={},
        clips=[run_state.ClipPlace("V1/0", "shotA", [[2.0, 24.0], [6.0, 24.0]])],
        state="failed",
        reason="out of memory",
    )
    recorded = recorded_run(source, settings, [record])
    display = RecordingDisplay()
    with pytest.raises(EditsFailed, match="^no edit was made, so cut-v2vz.otio was not written$"):
        write_output(settings, display, recorded, state_file)
    assert display.lines == ["failed: shotA (job job-1): out of memory"]
    assert not state_file.exists() and not settings.out.exists()


def test_resuming_with_another_timeline_is_refused_in_one_line(tmp_path: Path) -> None:
    source = marked_timeline(tmp_path)
    other = tmp_path / "other.otio"
    other.write_text(source.read_text())
    settings = settings_for(other, tmp_path / "cut-v2vz.otio")
    state_file = run_state.state_path(settings.out)
    recorded_run(source, settings, [])
    with pytest.raises(InvalidArgument, match=f"records a run of {source} into cut-v2vz.otio"):
        run(settings, RecordingDisplay(), no_daemon, wait=True, dry_run=False)
    assert json.loads(state_file.read_text())["input"] == str(source)  # the record is kept
