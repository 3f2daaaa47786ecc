"""`v2vz timeline`, round 3 (issue 23): a badly marked clip is left alone with its reason while the rest are edited;
which of two markers is used; `.otio` files that hold no timeline, a NaN rate or 200,000 `[` are one `error:` line
and exit 2 (never a traceback, never SIGSEGV); the dry run places a track's clips in one pass (linear, not
quadratic); lines about a job shared by many clips stay short; a followed job's replayed history is not said as
news; the media folder of `cut-v2vz.xml` is not `cut-v2vz-v2vz-media`; and a media file's start timecode is taken
or ignored by the same rules as the engine's probe. Real clips (PyAV), real `.otio` files, the command in process
against tests/cli/test_timeline.py's fake daemon (the command in a subprocess where a crash must not take pytest down).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

try:
    import opentimelineio as otio
except ImportError:  # the README's test command installs the extra: without it these tests fail, never skip
    pytest.fail("opentimelineio is not installed: pip install -e '.[dev,timeline]'", pytrace=False)

from typer.testing import CliRunner  # noqa: E402

from v2vz.api import safe_json  # noqa: E402
from v2vz.api.errors import InvalidArgument  # noqa: E402
from v2vz.api.v1 import editor_pb2 as pb  # noqa: E402
from v2vz.cli.main import app  # noqa: E402
from v2vz.timeline import clips, ranges  # noqa: E402
from v2vz.timeline import media as timeline_media  # noqa: E402
from v2vz.timeline.state import state_path  # noqa: E402

from .test_timeline import (  # noqa: E402
    MARK,
    NTSC,
    FakeClient,
    FakeDaemon,
    build_timeline,
    clip,
    error_lines,
    invoke,
    make_clip,
    probe,
)

RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """30-frame clips at 24 fps and at 30000/1001 from 01:00:00:00 (as tests/cli/test_timeline.py's)."""
    folder = tmp_path_factory.mktemp("timeline-r3-media")
    return {
        "24": make_clip(folder / "shot24.mov", Fraction(24)),
        "30000/1001": make_clip(folder / "shot2997.mov", NTSC, timecode="01:00:00:00"),
    }


def marked(name: str, path: Path, first: int, *markers: str, **meta) -> otio.schema.Clip:
    """A 3-frame clip of the 24 fps media from `first`, with these markers (in time order) and metadata."""
    made = clip(name, path, "24", first, 3, None, **meta)
    for offset, text in enumerate(markers):
        made.markers.append(otio.schema.Marker(name=text, marked_range=TR(RT(first + offset, 24), RT(0, 24))))
    return made


def one_track(*items: otio.schema.Clip) -> otio.schema.Timeline:
    timeline = otio.schema.Timeline(name="cut")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.extend(items)
    timeline.tracks.append(track)
    return timeline


def written(timeline: otio.schema.Timeline, path: Path) -> Path:
    otio.adapters.write_to_file(timeline, str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# item 8: a bad marker leaves that clip alone, with its reason; the rest are edited

BAD_CLIPS = {  # clip name -> (markers, metadata, words of the reason)
    "emptyprompt": (["source: a red box; prompt: "], {}, "has no `prompt:`"),
    "onlyv2vz": (["v2vz"], {}, "its v2vz marker has no `source:` and `prompt:`"),
    "badoption": ([f"{MARK}; options: --stepz 3"], {}, "unknown option '--stepz': did you mean --steps?"),
    "quotedoptions": ([f'{MARK}; options: --steps 30 "--guidance 5"'], {}, "in quotes, as one word"),
    "openquote": ([f"{MARK}; options: --inversion 'a car"], {}, "cannot be read (it opens a quote it does not close)"),
    "previewmaybe": ([f"{MARK}; preview: maybe"], {}, "it says 'preview: maybe': write 'preview: yes' or"),
    "zerosteps": ([f"{MARK}; options: --steps 0"], {}, "steps must be between 1 and 1000, got 0"),
    "longprompt": ([f"source: a red box; prompt: {'x' * 5000}"], {}, "the prompt has 5000 characters"),
    "listsource": ([], {"source": ["a red box"], "prompt": "a cat"}, 'metadata["v2vz"]["source"] is a list'),
    "numberprompt": ([], {"source": "a red box", "prompt": 7}, 'metadata["v2vz"]["prompt"] is a number'),
    "nulloption": ([], {"source": "a", "prompt": "b", "options": {"steps": None}}, "steps must be int"),
    "listoptions": ([], {"source": "a", "prompt": "b", "options": [1, 2]}, '["options"] is not a dictionary'),
}


def bad_timeline(path: Path) -> otio.schema.Timeline:
    items = [marked("good", path, 0, MARK)]
    for index, (name, (markers, meta, _)) in enumerate(BAD_CLIPS.items()):
        items.append(marked(name, path, (index + 1) % 27, *markers, **meta))
    items.append(marked("good2", path, 20, "source: a red box; prompt: a green frog"))
    timeline = one_track(*items)
    timeline.tracks.append(marked("loose", path, 0, MARK))  # a clip among the tracks, on none (a hand-made .otio)
    timeline.tracks.append(otio.schema.Gap(source_range=TR(RT(0, 24), RT(3, 24))))
    return timeline


def test_each_badly_marked_clip_is_left_alone_with_its_reason_and_the_others_are_edited(media, fake, tmp_path):
    cut = written(bad_timeline(media["24"]), tmp_path / "cut.otio")
    out = tmp_path / "edited.otio"
    result = invoke(cut, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr and not error_lines(result)
    left = [line for line in result.stderr.splitlines() if line.startswith("left alone: ")]
    assert len(left) == len(BAD_CLIPS) + 1, left
    loose = "left alone: loose (on no track): it sits in the timeline's stack, not on a track: put it on a video track"
    assert loose in left, left
    for name, (_, _, reason) in BAD_CLIPS.items():
        line = next((line for line in left if line.startswith(f"left alone: {name} (track 'V1' at ")), None)
        assert line is not None and reason in line, (name, left)
    assert sorted(entry["job"].prompt for entry in fake.jobs.values()) == ["a blue cat", "a green frog"]
    result_timeline = otio.adapters.read_from_file(str(out))
    edits = [t for t in result_timeline.tracks if isinstance(t, otio.schema.Track) and clips.is_v2vz_track(t)][0]
    assert [item.name for item in edits if isinstance(item, otio.schema.Clip)] == ["good v2vz t1", "good2 v2vz t2"]


def test_the_dry_run_lists_the_bad_clips_and_plans_the_others(media, tmp_path):
    cut = written(bad_timeline(media["24"]), tmp_path / "cut.otio")
    result = invoke(cut, "--out", tmp_path / "edited.otio", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert f"2 edit(s), {len(BAD_CLIPS) + 1} clip(s) left alone; nothing submitted (--dry-run)" in result.stderr
    assert "would edit good: frames 0..2" in result.stderr and "would edit good2: frames 20..22" in result.stderr


def test_when_every_marked_clip_is_bad_it_is_one_error_line_after_the_reasons(media, fake, tmp_path):
    only_bad = one_track(marked("zerosteps", media["24"], 0, f"{MARK}; options: --steps 0"))
    result = invoke(written(only_bad, tmp_path / "cut.otio"), "--out", tmp_path / "edited.otio")
    assert result.exit_code == 2, result.stderr
    assert "left alone: zerosteps (track 'V1' at 00:00:00:00): its options: steps must be" in result.stderr
    assert error_lines(result) == ["error: no marked clip of cut.otio can be edited (see the reasons above)"]
    assert not fake.jobs and not (tmp_path / "edited-v2vz-media").exists()


def test_two_markers_asking_for_different_edits_say_which_one_is_used(media, fake, tmp_path):
    twice = marked("twice", media["24"], 2, "source: a red box; prompt: a cat", "source: a red box; prompt: a dog")
    same = marked("same", media["24"], 8, MARK, MARK)  # the same edit twice: nothing to say
    both = marked("both", media["24"], 14, MARK, source="a red box", prompt="a frog")
    result = invoke(written(one_track(twice, same, both), tmp_path / "cut.otio"), "--out", tmp_path / "edited.otio")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: twice (track 'V1' at 00:00:00:00): it has 2 markers with different prompts: the first in time, "
        "marker 'source: a red box; prompt: a cat', is used; marker 'source: a red box; prompt: a dog' not",
        f"note: both (track 'V1' at 00:00:00:06): its marker {MARK!r} is used, not its metadata[\"v2vz\"], which "
        "asks for another edit",
    ], notes
    assert sorted(entry["job"].prompt for entry in fake.jobs.values()) == ["a blue cat", "a blue cat", "a cat"]


# ---------------------------------------------------------------------------------------------------------------
# item 7: .otio files that hold no timeline, a NaN rate, deep nesting


def test_otio_files_without_a_usable_timeline_are_one_line_and_exit_2(media, fake, tmp_path):
    nan = written(one_track(marked("shotA", media["24"], 0, MARK)), tmp_path / "nan.otio")
    nan.write_text(nan.read_text().replace('"rate": 24.0', '"rate": NaN', 1))
    cases = {
        "null": ("null", "holds no timeline (OpenTimelineIO): it holds null"),
        "list": ("[1, 2]", "holds no timeline (OpenTimelineIO): it holds a list"),
        "unknown": ('{"OTIO_SCHEMA": "Reel.1", "a": 1}', "it holds an object of the unknown schema Reel.1"),
        "clip": (otio.adapters.write_to_string(marked("c", media["24"], 0, MARK)), "it holds a Clip, not a timeline"),
        "nan": (nan.read_text(), "at nan fps, which is not a number: export the timeline again"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.otio"
        path.write_text(text)
        for extra in ((), ("--dry-run",)):
            result = invoke(path, "--out", tmp_path / "o.otio", *extra)
            assert result.exit_code == 2 and not isinstance(result.exception, AttributeError), (name, result.stderr)
            assert len(error_lines(result)) == 1 and message in error_lines(result)[0], (name, result.stderr)
            assert "Traceback" not in result.stderr
    assert not fake.jobs and not (tmp_path / "o-v2vz-media").exists()


def run_cli(*args: object) -> subprocess.CompletedProcess:
    """The command in its own process: a crash (SIGSEGV) there is a return code here, not the end of pytest."""
    command = [sys.executable, "-c", "from v2vz.cli.main import main; main()", "timeline", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_deeply_nested_json_is_one_line_not_a_crash(media, tmp_path):
    cut = written(one_track(marked("shotA", media["24"], 0, MARK)), tmp_path / "cut.otio")
    deep = tmp_path / "deep.otio"
    deep.write_text("[" * 200_000)
    result = run_cli(deep, "--out", tmp_path / "o.otio", "--dry-run")
    assert result.returncode == 2, (result.returncode, result.stderr[-400:])
    assert result.stderr.strip().splitlines() == [
        f"error: {deep} (OpenTimelineIO) is not valid: its JSON nests more than 512 levels deep"
    ]
    # an OUT that exists is read too (its v2vz tracks are carried over), and so is the run record beside OUT
    out = tmp_path / "edited.otio"
    out.write_text('{"a": ' * 100_000)
    result = run_cli(cut, "--out", out, "--dry-run")
    assert result.returncode == 2 and "exists and is not a timeline" in result.stderr, result.stderr[-400:]
    out.unlink()
    state_path(out).write_text("[" * 200_000)
    result = run_cli(cut, "--out", out, "--no-wait")
    assert result.returncode == 2, (result.returncode, result.stderr[-400:])
    assert "is not a v2vz timeline run" in result.stderr and "nests more than 512 levels" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "edited-v2vz-media").exists()


def test_safe_json_measures_nesting_outside_strings_and_refuses_deep_files(tmp_path):
    assert safe_json.nesting_depth('{"a": [1, {"b": "x[[[{{\\"]]"}], "c": "]"}') == 3
    assert safe_json.nesting_depth("[" * 200_000) == safe_json.MAX_DEPTH + 1  # stops counting: no recursion
    assert safe_json.loads('{"a": [[1]]}', "x.json") == {"a": [[1]]}
    nested = "[" * 600 + "]" * 600
    with pytest.raises(InvalidArgument, match=r"^x.json is not valid: its JSON nests more than 512 levels deep$"):
        safe_json.loads(nested, "x.json")
    value = safe_json.loads(nested, "x.json", limit=700)  # a caller may allow more
    for _ in range(599):
        value = value[0]
    assert value == []
    with pytest.raises(InvalidArgument, match=r"^x.json is not valid JSON \(Expecting"):
        safe_json.loads("{nope", "x.json")
    path = tmp_path / "record.json"
    path.write_bytes(b"\xff\xfe[")
    with pytest.raises(InvalidArgument, match="is not UTF-8 text"):
        safe_json.load_file(path)
    with pytest.raises(FileNotFoundError):
        safe_json.load_file(tmp_path / "none.json")


# ---------------------------------------------------------------------------------------------------------------
# item 8: the dry run places clips in one pass per track; lines about many clips stay short


def test_clips_are_placed_in_one_pass_per_track_exactly_where_otio_puts_them(media, tmp_path, monkeypatch):
    """Placing each clip with OTIO's `transformed_time_range` walks its track from the start: the square of the
    track's length. The dry run must not call it per clip, and its one-pass places must be OTIO's exactly."""
    many = one_track(*(marked(f"c{i}", media["24"], i % 27, f"source: a; prompt: b{i}") for i in range(300)))
    cut = written(many, tmp_path / "many.otio")
    calls = {"item": 0, "track": 0}
    for kind, cls in (("item", otio.schema.Clip), ("track", otio.schema.Track)):
        inner = cls.transformed_time_range

        def counted(self, *args, _inner=inner, _kind=kind):
            calls[_kind] += 1
            return _inner(self, *args)

        monkeypatch.setattr(cls, "transformed_time_range", counted)
    result = invoke(cut, "--out", tmp_path / "o.otio", "--dry-run")
    assert result.exit_code == 0 and "300 edit(s), 0 clip(s) left alone" in result.stderr, result.stderr[-300:]
    assert calls == {"item": 0, "track": 0}, calls
    monkeypatch.undo()
    timeline = build_timeline("30000/1001", media["30000/1001"], tmp_path)  # gaps, a transition, nested stack
    timeline.tracks[0].source_range = TR(RT(2, 30000 / 1001), RT(40, 30000 / 1001))
    for track in timeline.tracks:
        if isinstance(track, otio.schema.Track):
            for item, place in zip(track, clips.record_ranges(track, timeline), strict=True):
                if not isinstance(item, otio.schema.Transition):
                    expected = item.transformed_time_range(item.trimmed_range(), timeline.tracks)
                    assert (place.start_time.value, place.start_time.rate) == (
                        expected.start_time.value,
                        expected.start_time.rate,
                    ), item.name
                    assert place.duration.value == expected.duration.value, item.name


def test_lines_about_a_job_many_clips_share_name_a_few_and_count_the_rest(media, fake, tmp_path):
    shared = one_track(*(marked(f"clip{i}", media["24"], 5, MARK) for i in range(40)))
    result = CliRunner().invoke(
        app, ["timeline", str(written(shared, tmp_path / "cut.otio")), "--out", str(tmp_path / "o.otio"), "--quiet"]
    )
    assert result.exit_code == 0, result.stderr
    submitted = [line for line in result.stderr.splitlines() if line.startswith("submitted ")]
    assert len(submitted) == 1 and len(fake.jobs) == 1
    assert re.fullmatch(
        r"submitted clip0, clip1, clip2, clip3, clip4 and 35 more: job \w+, take 1 \(shot24-v2vz-t1\.mov\)",
        submitted[0],
    ), submitted
    fake.fail = {"a blue cat"}
    result = invoke(tmp_path / "cut.otio", "--out", tmp_path / "o2.otio")
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert result.exit_code == 1 and len(failed) == 1 and len(failed[0]) < 160, failed
    assert failed[0].startswith("failed: clip0, clip1, clip2, clip3, clip4 and 35 more (job ")


class InterruptingClient(FakeClient):
    """Ctrl-C while the 61st job is submitted."""

    def submit(self, job, stream_frames: bool = False, client: str = ""):
        if len(self.daemon.jobs) == 60:
            raise KeyboardInterrupt
        return super().submit(job, stream_frames, client)


def test_the_run_record_is_not_rewritten_per_job_yet_holds_every_submitted_job(media, fake, tmp_path, monkeypatch):
    """The record beside OUT is one JSON document: rewritten after each of 10,000 submissions it costs the square of
    their number. It is written far less often, and still holds every job submitted when the run stops."""
    from v2vz.timeline import state as run_state

    writes: list[int] = []
    inner = run_state.write_state
    monkeypatch.setattr(
        run_state, "write_state", lambda path, state: writes.append(len(state.edits)) or inner(path, state)
    )
    fake.hold = True
    many = one_track(*(marked(f"c{i}", media["24"], i % 27, f"source: a; prompt: b{i}") for i in range(120)))
    cut = written(many, tmp_path / "cut.otio")
    out = tmp_path / "edited.otio"
    result = invoke(cut, "--out", out, "--no-wait")
    assert result.exit_code == 0 and len(fake.jobs) == 120, result.stderr[-300:]
    assert 1 <= len(writes) <= 12 and writes[-1] == 120, writes
    recorded = json.loads(state_path(out).read_text())
    assert sorted(edit["job_id"] for edit in recorded["edits"]) == sorted(fake.jobs)
    # Ctrl-C in the middle: the jobs submitted so far are all in the record, so the same command re-attaches
    other = tmp_path / "other.otio"
    fake.jobs.clear()
    import v2vz.client

    monkeypatch.setattr(InterruptingClient, "daemon", fake, raising=False)
    monkeypatch.setattr(v2vz.client, "Client", InterruptingClient)
    result = invoke(cut, "--out", other, "--no-wait")
    assert result.exit_code == 130, result.stderr[-300:]
    assert "60 of 120 edit(s) were submitted before this stopped" in result.stderr
    recorded = json.loads(state_path(other).read_text())
    assert sorted(edit["job_id"] for edit in recorded["edits"]) == sorted(fake.jobs) and len(fake.jobs) == 60


# ---------------------------------------------------------------------------------------------------------------
# item 14: a followed job's replayed history is not said as news


class HistoryDaemon(FakeDaemon):
    """Jobs that ran while the command followed others: their events, replayed, are a minute old."""

    def __init__(self, age: float) -> None:
        super().__init__()
        self.age = age

    def events(self, job_id: str) -> list[pb.JobEvent]:
        then = time.time() - self.age
        done = pb.Done(output=str(self.jobs[job_id]["job"].output), frames=3, seconds=0.1)
        events = [
            pb.JobEvent(job_id=job_id, sequence=1, time_unix=then, queued=pb.Queued(position=3)),
            pb.JobEvent(job_id=job_id, sequence=2, time_unix=then, progress=pb.Progress(stage="edit", step=1, total=2)),
            pb.JobEvent(job_id=job_id, sequence=3, time_unix=then, done=done),
        ]
        return events


@pytest.mark.parametrize("age", [60.0, 0.0])
def test_a_job_that_ended_meanwhile_is_not_said_to_be_queued(media, fake, tmp_path, monkeypatch, age):
    daemon = HistoryDaemon(age)
    monkeypatch.setattr(FakeClient, "daemon", daemon, raising=False)
    monkeypatch.setenv("V2VZ_PROGRESS_SECONDS", "0")
    cut = written(one_track(marked("shotA", media["24"], 0, MARK)), tmp_path / "cut.otio")
    result = CliRunner().invoke(app, ["timeline", str(cut), "--out", str(tmp_path / "o.otio")])  # a log: lines
    assert result.exit_code == 0, result.stderr
    assert "shotA: done, take 1 (shot24-v2vz-t1.mov)" in result.stderr
    if age:  # history: the job is done, its old place in the queue and its old progress are not news
        assert "queued" not in result.stderr and "shotA: edit 1/2" not in result.stderr, result.stderr
    else:  # live events are said as they come
        assert "shotA: queued, 3 ahead" in result.stderr and "shotA: edit 1/2" in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------------------------
# item 15: the media folder of an OUT already named -v2vz


def test_the_media_folder_of_an_out_named_v2vz_is_not_named_v2vz_twice(media, fake, tmp_path):
    cut = written(one_track(marked("shotA", media["24"], 0, MARK)), tmp_path / "cut.otio")
    result = invoke(cut, "--out", tmp_path / "cut-v2vz.otio")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cut-v2vz-media"]
    assert (tmp_path / "cut-v2vz-media" / "shot24-v2vz-t1.mov").is_file()
    assert invoke(cut, "--out", tmp_path / "other.otio").exit_code == 0
    assert (tmp_path / "other-v2vz-media" / "shot24-v2vz-t1.mov").is_file()


# ---------------------------------------------------------------------------------------------------------------
# media.py: a start timecode is taken or ignored by the engine's rules

LABELS = [  # (fps, label)
    (Fraction(24), "01:00:00:00"),
    (Fraction(24), "99:00:00:00"),
    (Fraction(30), "01:00:00:30"),  # frame 30 of a 30-frame second
    (Fraction(25), "01:00:00;05"),  # drop-frame at 25
    (Fraction(30000, 1001), "00:59:59;28"),
    (Fraction(30000, 1001), "00:59:59.28"),  # drop-frame too (OTIO's own parser reads it as non-drop)
    (Fraction(60000, 1001), "00:01:00;04"),
    (Fraction(60000, 1001), "00:01:00;03"),  # 59.94 skips four labels a minute
    (Fraction(24000, 1001), "10:00:00:23"),
    (Fraction(30000, 1001), "00:01:00;01"),  # a label drop-frame skips
    (Fraction(30000, 1001), "00:10:00;00"),  # every tenth minute keeps it
    (Fraction(25), "01:61:00:00"),
    (Fraction(24), "1:00:00"),
]


def test_a_start_timecode_is_taken_or_ignored_and_counted_as_the_engine_does(tmp_path):
    from v2vz_engine.media.timecode import to_frames
    from v2vz_engine.media.video import probe_video

    for index, (fps, label) in enumerate(LABELS):
        try:
            engine_frame = to_frames(label, fps)
        except InvalidArgument:
            engine_frame = None
        assert timeline_media.label_frames(label, fps) == engine_frame, (fps, label)
        assert timeline_media.timecode_fits(label, fps) == (engine_frame is not None), (fps, label)
        if engine_frame is not None:
            assert ranges.timecode_frames(label, fps) == engine_frame, (fps, label)
        path = make_clip(tmp_path / f"tc{index}.mkv", fps, 3, label)  # Matroska keeps any label (TIMECODE tag)
        ours, engines = probe(path), probe_video(path)
        assert ours.timecode == engines.timecode, (fps, label)
        if ours.fps == fps:  # Matroska's millisecond clock cannot hold 60000/1001 (it reads back as 19001/317)
            assert ours.timecode == (label if engine_frame is not None else None), (fps, label)


def test_the_timeline_probe_and_the_engines_agree_on_files(tmp_path):
    from v2vz_engine.media.video import probe_video

    for index, (fps, label) in enumerate(LABELS[:6]):
        for suffix in (".mov", ".mp4"):
            path = make_clip(tmp_path / f"tc{index}{suffix}", fps, 3, label)
            ours, engines = probe(path), probe_video(path)
            assert (ours.timecode, ours.fps, ours.frames) == (engines.timecode, engines.fps, engines.frame_count)


def test_an_edls_source_times_count_from_a_matroska_timecode_that_fits_and_from_0_otherwise(tmp_path):
    """A reference without an available range (an EDL's) counts from the file's start timecode: the Matroska
    `TIMECODE` tag the engine reads, unless the label does not fit the rate, which the engine ignores."""
    shots = []
    for name, label, fps, first in (
        ("fits", "01:00:00:00", Fraction(30), 108004),
        ("odd", "01:00:00:45", Fraction(30), 4),  # no such frame at 30 fps: ignored, as the engine ignores it
        ("dotted", "00:59:59.28", NTSC, 107890 + 4),  # drop-frame: frame 107890, as the engine counts it
    ):
        path = make_clip(tmp_path / f"{name}.mkv", fps, 30, label)
        rate = float(fps)
        shot = otio.schema.Clip(
            name=name,
            media_reference=otio.schema.ExternalReference(target_url=path.as_uri()),
            source_range=TR(RT(first, rate), RT(5, rate)),
        )
        shot.markers.append(otio.schema.Marker(name=MARK, marked_range=TR(RT(first + 1, rate), RT(0, rate))))
        shots.append(shot)
    result = invoke(written(one_track(*shots), tmp_path / "cut.otio"), "--out", tmp_path / "o.otio", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "would edit fits: frames 4..8 of fits.mkv (30 fps)" in result.stderr, result.stderr
    assert "would edit odd: frames 4..8 of odd.mkv (30 fps)" in result.stderr, result.stderr
    assert "would edit dotted: frames 4..8 of dotted.mkv (30000/1001 fps)" in result.stderr, result.stderr
