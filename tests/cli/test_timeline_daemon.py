"""`v2vz timeline` through a real daemon (in this process, on the session's `tiny` pipeline): a couple of real edits
of tiny clips, written as ProRes MOVs, placed on the v2vz track; then a --no-wait run, re-attached by the same command.
The many formats, and the rest of the re-runs, are tested on the OTIO side (tests/cli/test_timeline.py)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

try:
    import opentimelineio as otio
except ImportError:  # the README's test command installs the extra: without it these tests fail, never skip
    pytest.fail("opentimelineio is not installed: pip install -e '.[dev,timeline]'", pytrace=False)

import av  # noqa: E402

from v2vz.timeline import adapters, clips  # noqa: E402
from v2vz.timeline.media import probe  # noqa: E402
from v2vz.timeline.state import state_path  # noqa: E402

from ..daemon_kit import make_daemon  # noqa: E402
from .test_timeline import (  # noqa: E402
    MARK,
    NTSC,
    clip,
    digest,
    gap,
    invoke,
    make_clip,
    places,
)

FAST = ("--steps", "2", "--size", "32")


@pytest.fixture(scope="module")
def served(tmp_path_factory, pipeline):
    """One in-process daemon for the module; clients find it through V2VZ_ENDPOINT, as the CLI does."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="v2vz-tl-", dir="/tmp"))  # Unix socket paths must stay short
    server = make_daemon(root, lambda: pipeline)
    server.start()
    assert server.wait_ready(30)
    yield root / "run" / "endpoint.json"
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def endpoint(served, monkeypatch):
    monkeypatch.setenv("V2VZ_ENDPOINT", str(served))
    return served


def two_rate_timeline(folder):
    """Two marked clips trimmed inside longer media, one at 24 fps and one at 30000/1001 starting at 01:00:00:00,
    each on a track of its own after a gap."""
    a = make_clip(folder / "a24.mov", Fraction(24), 12)
    b = make_clip(folder / "b2997.mov", NTSC, 12, timecode="01:00:00:00")
    timeline = otio.schema.Timeline(name="real")
    v1 = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    v1.append(gap(2, "24"))
    v1.append(clip("shotA", a, "24", 3, 4, MARK))
    timeline.tracks.append(v1)
    v2 = otio.schema.Track(name="V2", kind=otio.schema.TrackKind.Video)
    v2.append(gap(20, "30000/1001"))
    v2.append(clip("shotB", b, "30000/1001", 5, 3, "source: a grey box; prompt: a red car"))
    timeline.tracks.append(v2)
    return timeline


def test_real_edits_land_on_the_v2vz_track_and_a_no_wait_run_adds_another(endpoint, tmp_path):
    source = two_rate_timeline(tmp_path)
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(source, str(cut))
    out = tmp_path / "edited.otio"
    result = invoke(cut, "--out", out, *FAST)
    assert result.exit_code == 0, result.stderr
    result_timeline = adapters.read_timeline(out)
    ours = [t for t in result_timeline.tracks if clips.is_v2vz_track(t)]
    assert [t.name for t in ours] == ["v2vz"]
    edits = {c.metadata["v2vz"]["source_clip"]: c for c in ours[0] if isinstance(c, otio.schema.Clip)}
    assert sorted(edits) == ["shotA", "shotB"]
    for name, rate, frames in (("shotA", Fraction(24), 4), ("shotB", NTSC, 3)):
        path = clips.url_to_path(edits[name].media_reference.target_url, tmp_path)
        facts = probe(path)
        assert (facts.fps, facts.frames) == (rate, frames)
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == "prores"  # .mov: ProRes 422 HQ by default
        record = json.loads(path.with_name(path.name + ".v2vz.json").read_text())
        assert record["job"]["options"]["steps"] == 2 and record["job"]["start"] == (3 if name == "shotA" else 5)
        meta = edits[name].metadata["v2vz"]
        assert meta["model"] == "tiny" and meta["take"] == 1 and len(meta["job_id"]) == 12
        place = edits[name].transformed_time_range(edits[name].trimmed_range(), result_timeline.tracks)
        assert place == places(source, (name,))[0]
    # the NTSC edit carries the timecode of its first frame, 01:00:00:05, and the clip is on that clock
    assert probe(clips.url_to_path(edits["shotB"].media_reference.target_url, tmp_path)).timecode == "01:00:00:05"
    assert edits["shotB"].source_range.start_time.value == 108005
    first = {p.name: digest(p) for p in (tmp_path / "edited-v2vz-media").iterdir()}

    # again, without waiting: the jobs are recorded beside OUT; the same command then waits for them
    submitted = invoke(cut, "--out", out, *FAST, "--no-wait", "--prompt-from", "markers")
    assert submitted.exit_code == 0, submitted.stderr
    assert state_path(out).exists()
    done = invoke(cut, "--out", out, *FAST, "--prompt-from", "markers")
    assert done.exit_code == 0, done.stderr
    assert "re-attaching to 2 of the 2 edit(s)" in done.stderr and not state_path(out).exists()
    assert {p.name: digest(p) for p in (tmp_path / "edited-v2vz-media").iterdir() if p.name in first} == first
    result_timeline = adapters.read_timeline(out)
    assert [t.name for t in result_timeline.tracks] == ["V1", "V2", "v2vz", "v2vz 2"]
    second = [c for c in result_timeline.tracks[3] if isinstance(c, otio.schema.Clip)]
    assert sorted(c.metadata["v2vz"]["take"] for c in second) == [2, 2]  # a second take of each clip
