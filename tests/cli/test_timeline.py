"""`v2vz timeline` on the OpenTimelineIO side: timelines at 24, 25 and 30000/1001 fps built here with OTIO, with clips
trimmed inside longer media (real short clips written with PyAV), markers and metadata on some clips, a transition
and gaps, read and written in every format whose adapter is installed, against a fake daemon client that writes
the takes at once. tests/cli/test_timeline_daemon.py runs a couple of real edits through the daemon.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
from fractions import Fraction
from pathlib import Path

import pytest

try:
    import opentimelineio as otio
except ImportError:  # the README's test command installs the extra: without it these tests fail, never skip
    pytest.fail("opentimelineio is not installed: pip install -e '.[dev,timeline]'", pytrace=False)

import av  # noqa: E402
import numpy as np  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from v2vz.api.errors import InvalidArgument  # noqa: E402
from v2vz.api.v1 import editor_pb2 as pb  # noqa: E402
from v2vz.cli.main import app  # noqa: E402
from v2vz.cli.timeline import EXTRA_LINE  # noqa: E402
from v2vz.timeline import adapters, clips, prompts, ranges  # noqa: E402
from v2vz.timeline.media import probe  # noqa: E402
from v2vz.timeline.state import state_path  # noqa: E402

RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange
NTSC = Fraction(30000, 1001)
RATES = {"24": Fraction(24), "25": Fraction(25), "30000/1001": NTSC}
MEDIA_FRAMES = 30
MARK = "source: a red box; prompt: a blue cat"  # one line: formats that keep only a marker's name keep it all


# ---------------------------------------------------------------------------------------------------------------
# media, timelines, a fake daemon


def make_clip(path: Path, fps: Fraction, frames: int = MEDIA_FRAMES, timecode: str | None = None) -> Path:
    """A tiny real clip (64x48, MPEG-4 Part 2: quick to write), optionally with a start timecode."""
    with av.open(str(path), "w") as container:
        if timecode:
            container.metadata["timecode"] = timecode
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            pixels = np.full((48, 64, 3), (index * 8) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """One clip per rate; the NTSC one starts at 01:00:00:00, so its source times are timecode frames."""
    folder = tmp_path_factory.mktemp("timeline-media")
    return {
        "24": make_clip(folder / "shot24.mov", Fraction(24)),
        "25": make_clip(folder / "shot25.mp4", Fraction(25)),
        "30000/1001": make_clip(folder / "shot2997.mov", NTSC, timecode="01:00:00:00"),
    }


def media_start(rate: str) -> int:
    return 108000 if rate == "30000/1001" else 0  # 01:00:00:00 at 30000/1001 (non-drop) is frame 108000


def reference(path: Path, rate: str) -> otio.schema.ExternalReference:
    fps = float(RATES[rate])
    available = TR(RT(media_start(rate), fps), RT(MEDIA_FRAMES, fps))
    return otio.schema.ExternalReference(target_url=path.as_uri(), available_range=available)


def clip(name: str, path: Path, rate: str, first: int, count: int, mark: str | None = None, **meta):
    fps, start = float(RATES[rate]), media_start(rate)
    made = otio.schema.Clip(
        name=name, media_reference=reference(path, rate), source_range=TR(RT(start + first, fps), RT(count, fps))
    )
    if mark:
        made.markers.append(otio.schema.Marker(name=mark, marked_range=TR(RT(start + first + 1, fps), RT(0, fps))))
    if meta:
        made.metadata["v2vz"] = meta
    return made


def gap(frames: int, rate: str) -> otio.schema.Gap:
    fps = float(RATES[rate])
    return otio.schema.Gap(source_range=TR(RT(0, fps), RT(frames, fps)))


def build_timeline(rate: str, path: Path, folder: Path) -> otio.schema.Timeline:
    """V1: gap, A (marker), transition, B (metadata), C (speed change, marked), D (not marked), a generator and a
    missing clip (marked), O (marked, past the media's end); V2: a nested stack holding a marked clip; A1: audio."""
    fps = float(RATES[rate])
    timeline = otio.schema.Timeline(name=f"cut {rate}")
    timeline.global_start_time = RT(86400 * (25 if rate == "25" else 24) if rate != "30000/1001" else 0, fps)
    v1 = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    v1.append(gap(3, rate))
    v1.append(clip("shotA", path, rate, 4, 8, MARK))
    v1.append(otio.schema.Transition(name="dissolve", in_offset=RT(2, fps), out_offset=RT(2, fps)))
    v1.append(clip("shotB", path, rate, 10, 6, source="a red box", prompt="a green frog"))
    speed = clip("shotC", path, rate, 2, 5, MARK)
    speed.effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    v1.append(speed)
    v1.append(clip("shotD", path, rate, 0, 4))
    generator = otio.schema.Clip(
        name="bars",
        media_reference=otio.schema.GeneratorReference(generator_kind="SMPTEBars"),
        source_range=TR(RT(0, fps), RT(4, fps)),
    )
    generator.markers.append(otio.schema.Marker(name=MARK, marked_range=TR(RT(1, fps), RT(0, fps))))
    v1.append(generator)
    v1.append(clip("offline", folder / "gone.mov", rate, 0, 4, MARK))
    v1.append(clip("shotO", path, rate, 25, 10, MARK))
    v2 = otio.schema.Track(name="V2", kind=otio.schema.TrackKind.Video)
    v2.append(gap(40, rate))
    nested = otio.schema.Stack(name="compound")
    inner = otio.schema.Track(name="inner", kind=otio.schema.TrackKind.Video)
    inner.append(clip("nestedclip", path, rate, 0, 4, MARK))
    nested.append(inner)
    v2.append(nested)
    a1 = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    a1.append(clip("sound", path, rate, 0, 20))
    timeline.tracks.extend([v1, v2, a1])
    return timeline


class FakeDaemon:
    """What the fake client does: takes written as the engine writes them (the range's frames at the source's rate,
    its timecode moved on to the range's first frame); `hold` keeps jobs running until released."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.hold = False
        self.refuse: set[str] = set()  # prompts the daemon refuses at submit
        self.fail: set[str] = set()  # prompts whose jobs fail (the GPU ran out of memory)

    def write(self, job_id: str) -> None:
        entry = self.jobs[job_id]
        if entry["written"] or entry["job"].prompt in self.fail:
            return
        job = entry["job"]
        facts = probe(job.source)
        timecode = None
        if facts.timecode:
            first = otio.opentime.from_timecode(facts.timecode, float(facts.fps)) + RT(job.start, float(facts.fps))
            timecode = otio.opentime.to_timecode(first, float(facts.fps))
        make_clip(job.output, facts.fps, job.frames, timecode)
        entry["written"] = True

    def events(self, job_id: str) -> list[pb.JobEvent]:
        entry = self.jobs[job_id]
        job = entry["job"]
        if job.prompt in self.fail:
            failed = pb.Failed(reason="the GPU ran out of memory", code="RESOURCE_EXHAUSTED")
            return [pb.JobEvent(job_id=job_id, sequence=1, failed=failed)]
        progress = [
            pb.JobEvent(
                job_id=job_id, sequence=2 + i, progress=pb.Progress(stage=s, step=n, total=2, window=1, windows=1)
            )
            for i, (s, n) in enumerate([("inversion", 2), ("edit", 1), ("edit", 2)])
        ]
        done = pb.Done(output=str(job.output), take=job.take or 0, frames=job.frames, seconds=0.1)
        return [
            pb.JobEvent(job_id=job_id, sequence=1, queued=pb.Queued(position=0)),
            *progress,
            pb.JobEvent(job_id=job_id, sequence=9, done=done),
        ]


class FakeClient:
    daemon: FakeDaemon

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        pass

    def info(self) -> pb.DaemonInfo:
        return pb.DaemonInfo(model="tiny", default_model="tiny", ready=True)

    def submit(self, job, stream_frames: bool = False, client: str = "") -> pb.SubmitEditReply:
        if job.prompt in self.daemon.refuse:
            raise InvalidArgument(f"the daemon does not like {job.prompt!r}")
        job_id = uuid.uuid4().hex[:12]
        self.daemon.jobs[job_id] = {"job": job, "written": False, "client": client}
        if not self.daemon.hold:
            self.daemon.write(job_id)
        return pb.SubmitEditReply(job_id=job_id)

    def follow(self, job_id: str, after: int = 0):
        self.daemon.write(job_id)
        yield from self.daemon.events(job_id)

    def jobs(self, limit: int = 50) -> list[pb.JobSummary]:
        return [
            pb.JobSummary(job_id=job_id, state="done" if entry["written"] else "running")
            for job_id, entry in self.daemon.jobs.items()
        ]


def invoke(*args: str):
    return CliRunner().invoke(app, ["timeline", *map(str, args), "--quiet"])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------------------------------------------------------
# checks of an output timeline


def video_tracks(timeline) -> list:
    return [t for t in timeline.tracks if isinstance(t, otio.schema.Track) and t.kind == otio.schema.TrackKind.Video]


def clips_by_name(track) -> dict[str, otio.schema.Clip]:
    return {item.name: item for item in track if isinstance(item, otio.schema.Clip)}


def frames_of(time) -> Fraction:
    """A time as frames at its own rate, exactly (values are whole frames)."""
    return Fraction(time.value).limit_denominator(1000)


def same_range(a, b) -> bool:
    """Record ranges equal exactly: the same frames at the same exact rate."""
    ok = ranges.exact_rate(a.start_time.rate) == ranges.exact_rate(b.start_time.rate)
    ok = ok and frames_of(a.start_time) == frames_of(b.start_time) and frames_of(a.duration) == frames_of(b.duration)
    return ok and ranges.exact_rate(a.duration.rate) == ranges.exact_rate(b.duration.rate)


def stack_range(item, timeline):
    """Where an item sits in the timeline (the time all tracks share; an EDL's track may start before 0)."""
    return item.transformed_time_range(item.trimmed_range(), timeline.tracks)


def places(timeline, names) -> list[otio.opentime.TimeRange]:
    """Where the named clips of a timeline sit, in time order."""
    found = [
        stack_range(item, timeline)
        for track in video_tracks(timeline)
        for item in track
        if isinstance(item, otio.schema.Clip) and item.name in names
    ]
    return sorted(found, key=lambda r: r.start_time.to_seconds())


def check_output(out: Path, rate: str, expected: list, track: str | None = None):
    """OUT holds a v2vz track whose clips sit exactly where their source clips do (`expected`: the source clips'
    places in the timeline made in the test), a source clip of OUT at each of them, on takes of the right length."""
    result = adapters.read_timeline(out, RATES[rate])
    tracks = video_tracks(result)
    ours = [t for t in tracks if clips.is_v2vz_track(t)]
    assert ours, [t.name for t in tracks]
    edit_track = ours[-1] if track is None else next(t for t in ours if t.name == track)
    sources = [
        stack_range(item, result) for t in tracks if t not in ours for item in t if isinstance(item, otio.schema.Clip)
    ]
    edits = [item for item in edit_track if isinstance(item, otio.schema.Clip)]
    assert len(edits) == len(expected), [e.name for e in edits]
    fps = RATES[rate]
    for edit, wanted in zip(edits, expected, strict=True):
        place = stack_range(edit, result)
        assert same_range(place, wanted), (edit.name, place, wanted)
        assert any(same_range(place, source) for source in sources), (edit.name, place, sources)
        path = clips.url_to_path(edit.media_reference.target_url, out.parent)
        facts = probe(path)
        assert facts.fps == fps and facts.frames == round(frames_of(wanted.duration)), (facts, wanted)
        assert clips.is_take_path(path)
    return result, edit_track


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# .otio at 24, 25 and 30000/1001 fps


@pytest.mark.parametrize("rate", list(RATES))
def test_otio_round_trip_puts_each_edit_where_its_source_clip_is(rate, media, fake, tmp_path):
    source = build_timeline(rate, media[rate], tmp_path)
    otio.adapters.write_to_file(source, str(tmp_path / "cut.otio"))
    result = invoke(tmp_path / "cut.otio", "--out", tmp_path / "edited.otio", "--steps", "2")
    assert result.exit_code == 0, result.stderr
    said = result.stderr
    for name, why in [
        ("shotC", "speed change (200%)"),
        ("bars", "generator (SMPTEBars)"),
        ("offline", "does not exist"),
        ("shotO", "frames 25..34 of its media, which has 30"),
        ("nestedclip", "nested stack"),
    ]:
        assert re.search(rf"left alone: {name} .*{re.escape(why)}", said), (name, said)
    assert "shotD" not in said  # not marked: not for v2vz, nothing to say
    out, edit_track = check_output(tmp_path / "edited.otio", rate, places(source, ("shotA", "shotB")))
    assert edit_track.name == "v2vz"
    # the input's tracks are unchanged, the new one is on top
    assert [t.name for t in out.tracks] == ["V1", "V2", "A1", "v2vz"]
    for before, after in zip(source.tracks, list(out.tracks)[:3], strict=True):
        assert otio.adapters.write_to_string(before) == otio.adapters.write_to_string(after)
    edits = clips_by_name(edit_track)
    a = edits["shotA v2vz t1"].metadata["v2vz"]
    assert (a["prompt"], a["source"], a["model"], a["take"]) == ("a blue cat", "a red box", "tiny", 1)
    assert a["job_id"] in fake.jobs and a["options"] == {"steps": "2"}
    assert edits["shotB v2vz t2"].metadata["v2vz"]["prompt"] == "a green frog"  # from the clip's metadata
    # the jobs: exactly the clips' source ranges, in the media's frames
    jobs = sorted((e["job"] for e in fake.jobs.values()), key=lambda job: job.start)
    assert [(job.start, job.frames) for job in jobs] == [(4, 8), (10, 6)]
    assert all(job.output.parent == tmp_path / "edited-v2vz-media" and job.output.suffix == ".mov" for job in jobs)
    assert all(entry["client"] == "v2vz-timeline" for entry in fake.jobs.values())
    # the edit clip is on the take's own clock: the NTSC take starts at the timecode of its first source frame, the
    # others (whose media carry no timecode) at 0
    a_clip = edits["shotA v2vz t1"]
    assert frames_of(a_clip.source_range.start_time) == (media_start(rate) + 4 if media_start(rate) else 0)
    assert a_clip.media_reference.available_range.duration.value == 8
    assert not state_path(tmp_path / "edited.otio").exists()


def test_a_second_run_adds_a_track_and_leaves_the_first_edits_as_they_were(media, fake, tmp_path):
    source = build_timeline("24", media["24"], tmp_path)
    otio.adapters.write_to_file(source, str(tmp_path / "cut.otio"))
    out = tmp_path / "edited.otio"
    assert invoke(tmp_path / "cut.otio", "--out", out).exit_code == 0
    folder = tmp_path / "edited-v2vz-media"
    first = {path.name: digest(path) for path in folder.iterdir()}
    assert {"shot24-v2vz-t1.mov", "shot24-v2vz-t2.mov"} <= set(first)
    again = invoke(tmp_path / "cut.otio", "--out", out)
    assert again.exit_code == 0, again.stderr
    assert {path.name: digest(path) for path in folder.iterdir() if path.name in first} == first
    result = adapters.read_timeline(out)
    assert [t.name for t in result.tracks] == ["V1", "V2", "A1", "v2vz", "v2vz 2"]
    check_output(out, "24", places(source, ("shotA", "shotB")), track="v2vz")
    _, second = check_output(out, "24", places(source, ("shotA", "shotB")), track="v2vz 2")
    assert sorted(clips_by_name(second)) == ["shotA v2vz t3", "shotB v2vz t4"]
    # the OUT of a run is also an input: its v2vz tracks are kept, never edited again
    third = invoke(out, "--out", out, "--track", "again")
    assert third.exit_code == 0, third.stderr
    result = adapters.read_timeline(out)
    assert [t.name for t in result.tracks] == ["V1", "V2", "A1", "v2vz", "v2vz 2", "again"]


def test_relative_media_paths_still_resolve_from_an_out_in_another_folder(media, fake, tmp_path):
    (tmp_path / "media").mkdir()
    make_clip(tmp_path / "media" / "rel.mov", Fraction(24))
    timeline = simple_timeline("24", media["24"])
    for item in timeline.tracks[0]:
        if isinstance(item, otio.schema.Clip):
            item.media_reference.target_url = "media/rel.mov"  # as some editors write them: from the timeline's folder
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "elsewhere" / "edited.otio"
    result = invoke(tmp_path / "cut.otio", "--out", out)
    assert result.exit_code == 0, result.stderr
    written = adapters.read_timeline(out)
    for item in written.find_clips():
        assert clips.url_to_path(item.media_reference.target_url, out.parent).is_file(), item.media_reference
    assert (tmp_path / "elsewhere" / "edited-v2vz-media" / "rel-v2vz-t1.mov").is_file()


def test_an_edit_is_counted_on_the_clock_its_source_clip_is_counted_on(media, fake, tmp_path):
    """A timeline that counts the NTSC media (timecode 01:00:00:00) from 0 gets its edit counted from 0 too."""
    fps = float(NTSC)
    timeline = otio.schema.Timeline(name="zero-based")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    ref = otio.schema.ExternalReference(
        target_url=media["30000/1001"].as_uri(), available_range=TR(RT(0, fps), RT(MEDIA_FRAMES, fps))
    )
    made = otio.schema.Clip(name="shotA", media_reference=ref, source_range=TR(RT(4, fps), RT(8, fps)))
    made.markers.append(otio.schema.Marker(name=MARK, marked_range=TR(RT(5, fps), RT(0, fps))))
    track.append(made)
    timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    assert invoke(tmp_path / "cut.otio", "--out", tmp_path / "edited.otio").exit_code == 0
    (entry,) = fake.jobs.values()
    assert (entry["job"].start, entry["job"].frames) == (4, 8)
    out = adapters.read_timeline(tmp_path / "edited.otio")
    (edit,) = [c for c in out.tracks[-1] if isinstance(c, otio.schema.Clip)]
    assert edit.source_range.start_time.value == 0 and edit.media_reference.available_range.start_time.value == 0


def test_clips_asking_for_the_same_edit_share_one_job_and_overlapping_edits_get_two_tracks(media, fake, tmp_path):
    timeline = otio.schema.Timeline(name="overlap")
    for name in ("V1", "V2"):
        track = otio.schema.Track(name=name, kind=otio.schema.TrackKind.Video)
        track.append(gap(2 if name == "V2" else 0, "24"))
        track.append(clip(f"{name}-a", media["24"], "24", 0, 6, MARK))
        track.append(clip(f"{name}-b", media["24"], "24", 8, 4, "source: a red box\nprompt: a dog\noptions: --steps 3"))
        timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    result = invoke(tmp_path / "cut.otio", "--out", tmp_path / "out.otio")
    assert result.exit_code == 0, result.stderr
    assert len(fake.jobs) == 2  # V1-a and V2-a: one edit; V1-b and V2-b: another
    assert {entry["job"].options.steps for entry in fake.jobs.values()} == {50, 3}
    out = adapters.read_timeline(tmp_path / "out.otio")
    lanes = [t for t in out.tracks if clips.is_v2vz_track(t)]
    assert [t.name for t in lanes] == ["v2vz", "v2vz 2"]
    placed = {c.metadata["v2vz"]["source_clip"]: c for t in lanes for c in t if isinstance(c, otio.schema.Clip)}
    originals = {c.name: c for t in list(out.tracks)[:2] for c in t if isinstance(c, otio.schema.Clip)}
    assert sorted(placed) == sorted(originals)
    for name, edit in placed.items():
        assert same_range(edit.range_in_parent(), originals[name].range_in_parent())


# ---------------------------------------------------------------------------------------------------------------
# every other format whose adapter is installed


OTHER_FORMATS = [".xml", ".fcpxml", ".edl", ".kdenlive", ".aaf"]


def installed(suffix: str) -> bool:
    return adapters.KNOWN_FORMATS[suffix].adapter in adapters.installed_adapters()


def simple_timeline(rate: str, path: Path) -> otio.schema.Timeline:
    """What every format holds: one video track with a gap, two marked clips (a dissolve between them where the
    format keeps one) and an unmarked one."""
    timeline = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(gap(3, rate))
    track.append(clip("shotA", path, rate, 4, 8, MARK))
    track.append(clip("shotB", path, rate, 14, 6, "source: a red box; prompt: a green frog"))
    track.append(clip("shotD", path, rate, 0, 4))
    timeline.tracks.append(track)
    return timeline


def add_kdenlive_markers(path: Path) -> None:
    """Clip markers as Kdenlive stores them (JSON on the bin clip; its comment is the OTIO marker's name): the
    Kdenlive adapter reads them but does not write them."""
    text = path.read_text()
    marker = json.dumps([{"pos": 5, "comment": MARK, "type": 0}]).replace('"', "&quot;")
    text, count = re.subn(
        r'(<producer id="producer\d+"[^>]*>)',
        rf'\1<property name="kdenlive:markers">{marker}</property>',
        text,
        count=1,
    )
    assert count == 1
    path.write_text(text)


@pytest.mark.parametrize("suffix", OTHER_FORMATS)
@pytest.mark.parametrize("rate", list(RATES))
def test_each_installed_format_writes_the_v2vz_track(suffix, rate, media, fake, tmp_path):
    if not installed(suffix):
        pytest.fail(
            f"the {adapters.KNOWN_FORMATS[suffix].package} adapter is not installed"
            + " (the timeline extra installs it)"
        )
    source = simple_timeline(rate, media[rate])
    otio.adapters.write_to_file(source, str(tmp_path / "cut.otio"))
    out = tmp_path / f"edited{suffix}"
    result = invoke(tmp_path / "cut.otio", "--out", out)
    if suffix == ".fcpxml" and rate == "30000/1001":  # the FCPX adapter cannot count NTSC: refused before any work
        assert result.exit_code == 2 and "writes only 24, 25, 30, 50, 60 fps" in error_lines(result)[0]
        assert not fake.jobs and not (tmp_path / "edited-v2vz-media").exists()
        return
    assert result.exit_code == 0, result.stderr
    if suffix == ".edl":  # one video track: the edits are in place of their sources
        track = video_tracks(adapters.read_timeline(out, RATES[rate]))
        assert len(track) == 1 and "flattened" in result.stderr
        names = [item.name for item in track[0] if isinstance(item, otio.schema.Clip)]
        assert names == ["shotA v2vz t1", "shotB v2vz t2", "shotD"]
        check_flattened(track[0], rate, out.parent)
        return
    check_output(out, rate, places(source, ("shotA", "shotB")))


def check_flattened(track, rate: str, base: Path) -> None:
    """The EDL's one track: the edits where their sources were (the EDL reader starts the track at its first
    event's record time, which stays 3 frames in), on takes of the right length."""
    fps = float(RATES[rate])
    timeline = otio.schema.Timeline()
    timeline.tracks.append(track.deepcopy())
    starts = {
        item.name: stack_range(item, timeline) for item in timeline.tracks[0] if isinstance(item, otio.schema.Clip)
    }
    assert same_range(starts["shotA v2vz t1"], TR(RT(3, fps), RT(8, fps))), starts
    assert same_range(starts["shotB v2vz t2"], TR(RT(11, fps), RT(6, fps))), starts
    for item in track:
        if isinstance(item, otio.schema.Clip) and "v2vz" in item.name:
            path = clips.url_to_path(item.media_reference.target_url, base)
            assert probe(path).frames == frames_of(item.source_range.duration)


@pytest.mark.parametrize("suffix", [".xml", ".fcpxml", ".edl", ".kdenlive"])
def test_each_installed_format_is_read_with_its_markers(suffix, media, fake, tmp_path):
    if not installed(suffix):
        pytest.fail(
            f"the {adapters.KNOWN_FORMATS[suffix].package} adapter is not installed"
            + " (the timeline extra installs it)"
        )
    rate = "25"
    cut = tmp_path / f"cut{suffix}"
    source = simple_timeline(rate, media[rate])
    otio.adapters.write_to_file(source, str(cut))
    if suffix == ".kdenlive":
        add_kdenlive_markers(cut)
    result = invoke(cut, "--out", tmp_path / "edited.otio")
    assert result.exit_code == 0, result.stderr
    # Kdenlive keeps a clip's markers on its media file (the bin clip): every clip of that file carries them
    names = ("shotA", "shotB", "shotD") if suffix == ".kdenlive" else ("shotA", "shotB")
    check_output(tmp_path / "edited.otio", rate, places(source, names))
    assert "a blue cat" in {entry["job"].prompt.lower() for entry in fake.jobs.values()}


def test_an_edl_is_read_at_its_media_rate_and_its_timecodes_count_from_the_media_start(media, fake, tmp_path):
    """An EDL as an editor exports it at 29.97 non-drop: the source times are the media's timecodes (the clip starts
    at 01:00:00:00), the rate is in no line of the file and comes from the media."""
    url = media["30000/1001"].as_uri()
    cut = tmp_path / "cut.edl"
    cut.write_text(
        "TITLE: cut\nFCM: NON-DROP FRAME\n\n"
        "001  SHOT2997 V     C        01:00:00:04 01:00:00:12 00:00:00:03 00:00:00:11\n"
        f"* FROM CLIP NAME:  shotA\n* FROM CLIP: {url}\n* LOC: 01:00:00:05 RED     {MARK.upper()}\n"
        "002  SHOT2997 V     C        01:00:00:14 01:00:00:20 00:00:00:11 00:00:00:17\n"
        f"* FROM CLIP NAME:  shotB\n* FROM CLIP: {url}\n* LOC: 01:00:00:15 RED     SOURCE: A BOX PROMPT: A DOG\n"
    )
    result = invoke(cut, "--out", tmp_path / "edited.otio")
    assert result.exit_code == 0, result.stderr
    jobs = sorted((entry["job"] for entry in fake.jobs.values()), key=lambda job: job.start)
    assert [(job.start, job.frames, job.prompt) for job in jobs] == [(4, 8, "A BLUE CAT"), (14, 6, "A DOG")]
    fps = float(NTSC)
    check_output(tmp_path / "edited.otio", "30000/1001", [TR(RT(3, fps), RT(8, fps)), TR(RT(11, fps), RT(6, fps))])


def test_an_edl_becomes_an_fcp_xml_with_its_first_event_where_it_was(media, fake, tmp_path):
    """The EDL reader starts a track at its first event (a track range before 0) and gives no media ranges; the
    FCP 7 XML writer needs neither: the track gets a leading gap and the references their media's ranges."""
    if not installed(".xml"):
        pytest.fail("the otio-fcp-adapter is not installed" + " (the timeline extra installs it)")
    source = simple_timeline("24", media["24"])
    otio.adapters.write_to_file(source, str(tmp_path / "cut.edl"))
    result = invoke(tmp_path / "cut.edl", "--out", tmp_path / "edited.xml")
    assert result.exit_code == 0, result.stderr
    out, _ = check_output(tmp_path / "edited.xml", "24", places(source, ("shotA", "shotB")))
    assert places(out, ("shotD",)) == places(source, ("shotD",))


def test_an_aaf_written_by_v2vz_reads_back_with_the_track(media, fake, tmp_path):
    if not installed(".aaf"):
        pytest.fail("the otio-aaf-adapter is not installed" + " (the timeline extra installs it)")
    rate = "25"
    timeline = simple_timeline(rate, media[rate])
    timeline.tracks[0].insert(2, otio.schema.Transition(in_offset=RT(1, 25.0), out_offset=RT(1, 25.0)))
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    result = invoke(tmp_path / "cut.otio", "--out", tmp_path / "edited.aaf")
    assert result.exit_code == 0, result.stderr
    assert "became cuts" in result.stderr
    check_output(tmp_path / "edited.aaf", rate, places(timeline, ("shotA", "shotB")))


# ---------------------------------------------------------------------------------------------------------------
# --no-wait, then re-runs


def test_no_wait_submits_then_a_re_run_re_attaches_and_writes_out(media, fake, tmp_path):
    source = build_timeline("24", media["24"], tmp_path)
    otio.adapters.write_to_file(source, str(tmp_path / "cut.otio"))
    out = tmp_path / "edited.otio"
    fake.hold = True
    first = invoke(tmp_path / "cut.otio", "--out", out, "--no-wait")
    assert first.exit_code == 0, first.stderr
    assert len(fake.jobs) == 2 and not out.exists()
    recorded = json.loads(state_path(out).read_text())
    assert sorted(e["job_id"] for e in recorded["edits"]) == sorted(fake.jobs)
    waiting = invoke(tmp_path / "cut.otio", "--out", out, "--no-wait")
    assert waiting.exit_code == 0 and "0 of 2 edit(s) done, 2 queued or running" in waiting.stderr
    assert not out.exists() and len(fake.jobs) == 2
    for job_id in fake.jobs:
        fake.write(job_id)
    done = invoke(tmp_path / "cut.otio", "--out", out, "--no-wait")
    assert done.exit_code == 0, done.stderr
    assert len(fake.jobs) == 2  # nothing submitted again
    check_output(out, "24", places(source, ("shotA", "shotB")))
    assert not state_path(out).exists()


def test_a_re_run_refuses_a_changed_input(media, fake, tmp_path):
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(build_timeline("24", media["24"], tmp_path), str(cut))
    fake.hold = True
    assert invoke(cut, "--out", tmp_path / "edited.otio", "--no-wait").exit_code == 0
    cut.write_text(cut.read_text().replace("shotA", "shotZ"))
    result = invoke(cut, "--out", tmp_path / "edited.otio")
    assert result.exit_code == 2 and "changed since its edits were submitted" in error_lines(result)[0]


def test_failed_and_refused_edits_are_listed_and_out_holds_the_rest(media, fake, tmp_path):
    source = build_timeline("25", media["25"], tmp_path)
    source.tracks[0].append(clip("shotE", media["25"], "25", 20, 3, "source: a red box; prompt: too big"))
    otio.adapters.write_to_file(source, str(tmp_path / "cut.otio"))
    fake.refuse, fake.fail = {"a green frog"}, {"too big"}
    result = invoke(tmp_path / "cut.otio", "--out", tmp_path / "edited.otio")
    assert result.exit_code == 1, result.stderr
    assert "shotB: the daemon refused it: the daemon does not like 'a green frog'" in result.stderr
    assert re.search(r"failed: shotE \(job \w+\): the GPU ran out of memory", result.stderr)
    assert error_lines(result) == ["error: 1 of 2 edit(s) failed (see above)"]
    check_output(tmp_path / "edited.otio", "25", places(source, ("shotA",)))
    assert sorted(p.name for p in (tmp_path / "edited-v2vz-media").iterdir()) == [
        "shot25-v2vz-t1.mov",
        "shot25-v2vz-t1.mov.v2vz.json",
    ]  # the takes of the refused and the failed edit were given back


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line, exit 2, before any work


def test_bad_input_is_one_line_and_exit_2_before_any_work(media, fake, tmp_path, monkeypatch):
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(build_timeline("24", media["24"], tmp_path), str(cut))
    plain = tmp_path / "plain.otio"
    unmarked = otio.schema.Timeline(name="plain")
    unmarked.tracks.append(otio.schema.Track(name="V1"))
    unmarked.tracks[0].append(clip("shotD", media["24"], "24", 0, 4))
    otio.adapters.write_to_file(unmarked, str(plain))
    cases = [
        ((tmp_path / "cut.mkv", "--out", tmp_path / "o.otio"), "OpenTimelineIO has no adapter for the extension .mkv"),
        ((tmp_path / "none.otio", "--out", tmp_path / "o.otio"), "does not exist"),
        ((cut, "--out", tmp_path / "o.otio", "--format", "avi"), "--format avi: choose mov"),
        ((cut, "--out", tmp_path / "o.otio", "--steps", "0"), "steps must be between 1 and 1000"),
        ((cut, "--out", tmp_path / "o.otio", "--rate", "fast"), "is not a number"),
        ((cut, "--out", tmp_path / "o.otio", "--prompt-from", "notes"), "--prompt-from notes: choose one of"),
        ((cut, "--out", tmp_path / "o.docx"), "no adapter for the extension .docx"),
        ((plain, "--out", tmp_path / "o.otio"), "is marked for v2vz: add a marker"),
        ((cut, "--out", cut.with_suffix(".otio.v2vz-run.json")), "no adapter"),
    ]
    (tmp_path / "o.txt").write_text("not a timeline")
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert len(error_lines(result)) == 1 and message in error_lines(result)[0], (args, result.stderr)
    assert not fake.jobs and not list(tmp_path.glob("*-v2vz-media"))
    (tmp_path / "o.otio").write_text("not a timeline")
    result = invoke(cut, "--out", tmp_path / "o.otio")
    assert result.exit_code == 2 and "exists and is not a timeline" in error_lines(result)[0]
    monkeypatch.setattr(adapters, "installed_adapters", lambda: {"otio_json": otio.adapters.from_name("otio_json")})
    result = invoke(cut, "--out", tmp_path / "o.edl")
    assert result.exit_code == 2
    assert "needs the OTIO adapter plugin otio-cmx3600-adapter: pip install otio-cmx3600" in error_lines(result)[0]


def test_no_daemon_is_one_line_before_any_take(media, tmp_path, monkeypatch):
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(build_timeline("24", media["24"], tmp_path), str(cut))
    monkeypatch.setenv("V2VZ_ENDPOINT", str(tmp_path / "nowhere" / "endpoint.json"))
    result = invoke(cut, "--out", tmp_path / "edited.otio")
    assert result.exit_code == 2, result.stderr
    assert len(error_lines(result)) == 1 and "v2vz serve" in error_lines(result)[0]
    assert "--local" not in result.stderr  # `v2vz edit`'s way out, not this command's
    assert not (tmp_path / "edited-v2vz-media").exists() and not state_path(tmp_path / "edited.otio").exists()


def test_dry_run_lists_the_plan_without_a_daemon(media, tmp_path):
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(build_timeline("30000/1001", media["30000/1001"], tmp_path), str(cut))
    result = invoke(cut, "--out", tmp_path / "edited.otio", "--dry-run")
    assert result.exit_code == 0, result.stderr
    said = result.stderr
    assert "would edit shotA: frames 4..11 of shot2997.mov (30000/1001 fps), 'a red box' -> 'a blue cat'" in said
    assert "2 edit(s), 5 clip(s) left alone" in result.stderr


def test_without_the_extra_the_command_says_what_to_install(tmp_path):
    script = (
        "import sys\n"
        "sys.modules['opentimelineio'] = None\n"  # as if the extra were not installed
        "from v2vz.cli.main import main\n"
        f"sys.argv = ['v2vz', 'timeline', {str(tmp_path / 'a.otio')!r}, '--out', {str(tmp_path / 'b.otio')!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {EXTRA_LINE}" and "pip install 'v2vz[timeline]'" in EXTRA_LINE
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['opentimelineio'] = None\nfrom v2vz.cli.main import main\n"
            "sys.argv = ['v2vz', '--help']\nmain()",
        ],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "timeline" in listed.stdout


def test_the_command_module_loads_no_otio_and_the_package_no_engine():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, v2vz.cli.main; print(sorted(m for m in sys.modules if m.split('.')[0] "
            "in ('opentimelineio', 'av', 'torch', 'v2vz_engine')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
    from ..test_layers import GRAPH, within

    for name, targets in GRAPH.items():
        if within(name, "v2vz.timeline"):
            bad = [t for t in targets if within(t, "v2vz.cli") or within(t, "v2vz_daemon") or within(t, "v2vz_engine")]
            assert not bad, (name, bad)


# ---------------------------------------------------------------------------------------------------------------
# the pieces


def test_rates_and_ranges_are_exact():
    assert ranges.exact_rate(30000 / 1001) == NTSC and ranges.exact_rate(29.97) == NTSC
    assert ranges.exact_rate(24.0) == 24 and ranges.exact_rate(23.976) == Fraction(24000, 1001)
    assert ranges.exact_rate(30.0, NTSC) == 30  # a timeline at 30 over 29.97 media is not the same clock
    fps = float(NTSC)
    got = ranges.media_range(TR(RT(108004, fps), RT(8, fps)), RT(108000, fps), NTSC, 30)
    assert (got.start, got.frames) == (4, 8)
    # a range counted at another rate: 10 frames at 24 are 20 at 48; 3 at 24 fall between frames of 30
    assert ranges.media_range(TR(RT(5, 24), RT(10, 24)), None, Fraction(48), 100) == ranges.MediaRange(10, 20)
    with pytest.raises(ranges.RangeProblem, match="falls between two frames"):
        ranges.media_range(TR(RT(3, 24), RT(8, 24)), None, Fraction(25), 100)
    with pytest.raises(ranges.RangeProblem, match="frames 25..34 of its media, which has 30"):
        ranges.media_range(TR(RT(25, 24), RT(10, 24)), None, Fraction(24), 30)
    # long timelines stay exact: 10 hours of 30000/1001 frames
    far = 10 * 3600 * 30
    assert ranges.media_range(TR(RT(far, fps), RT(1, fps)), None, NTSC, far + 1).start == far
    assert ranges.timecode_frames("01:00:00;00", NTSC) == 107892  # drop-frame


def test_prompts_from_markers_in_every_form():
    def marked(name: str, comment: str = "", **meta) -> otio.schema.Clip:
        made = otio.schema.Clip(name="c", source_range=TR(RT(0, 24), RT(4, 24)))
        made.markers.append(otio.schema.Marker(name=name, comment=comment, metadata=meta))
        return made

    got = prompts.prompts_of(marked("v2vz", "source: a car\nprompt: a jeep on snow\noptions: --steps 30 --fast"))
    assert (got.source, got.prompt, got.options) == ("a car", "a jeep on snow", {"steps": "30", "inversion": "direct"})
    assert prompts.prompts_of(marked("source: a car; prompt: a jeep")).prompt == "a jeep"
    assert prompts.prompts_of(marked("SOURCE: A CAR PROMPT: A JEEP")).source == "A CAR"  # as an EDL writes it
    assert prompts.prompts_of(marked("v2vz", fcp_xml={"comment": "source: a car\nprompt: a jeep"})).prompt == "a jeep"
    with pytest.raises(prompts.BadPrompts, match="no `source:` line"):
        prompts.prompts_of(marked("v2vz", "prompt: a jeep"))
    with pytest.raises(prompts.BadPrompts, match="needs them in the name"):
        prompts.prompts_of(marked("v2vz"))
    with pytest.raises(prompts.BadPrompts, match="stepz"):
        prompts.prompts_of(marked("source: a; prompt: b; options: --stepz 3"))
    with pytest.raises(prompts.NotMarked):
        prompts.prompts_of(marked("scene 12"))
    with pytest.raises(prompts.NotMarked):  # markers only: metadata does not count
        made = marked("scene 12")
        made.metadata["v2vz"] = {"source": "a", "prompt": "b"}
        prompts.prompts_of(made, "markers")
    assert prompts.prompts_of(made, "metadata").prompt == "b"


def test_media_urls_become_paths(tmp_path):
    assert clips.url_to_path("file:///media/a%20b.mov", tmp_path) == Path("/media/a b.mov")
    assert clips.url_to_path("file://localhost/media/a.mov", tmp_path) == Path("/media/a.mov")
    assert clips.url_to_path("/media/a.mov", tmp_path) == Path("/media/a.mov")
    assert clips.url_to_path("media/a.mov", tmp_path) == tmp_path / "media" / "a.mov"
    assert clips.url_to_path("file://server/share/a.mov", tmp_path) == Path("//server/share/a.mov")
    with pytest.raises(ValueError, match="not a file"):
        clips.url_to_path("https://example.com/a.mov", tmp_path)
    assert clips.is_take_path(Path("shot-v2vz-t12.mov")) and not clips.is_take_path(Path("shot-v2vz.mov"))
