"""The installed Resolve menu script against a fake Resolve (tests/fake_resolve.py) and a real `tiny` daemon."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from v2vz.cli.plugins import plugins_root
from v2vz.plugin_files import host

from ..conftest import CLIPS
from ..fake_resolve import (
    FakeProject,
    FakeResolve,
    FakeTimeline,
    FakeTimelineItem,
    FakeTimelineWithSelection,
    video_item,
)

V2VZ = str(Path(sys.executable).with_name("v2vz"))
BIKES = str(CLIPS / "bikes.mp4")
NOTE = "source: people riding bikes on a road\nprompt: people riding horses on a road\noptions: --steps 3"


@pytest.fixture
def served(resolve_daemon):
    """The one daemon of both Resolve test modules (conftest.resolve_daemon)."""
    return resolve_daemon


def install_script(dest: Path) -> Path:
    """`v2vz plugin install resolve --dest DIR`: the installed launcher's path. Only launchers go into DIR (Resolve
    lists every .py file there); v2vz-client.txt names the client, the folder of v2vz_host.py and the folder of
    v2vz_resolve.py, the script the launcher runs from the installation."""
    done = subprocess.run([V2VZ, "plugin", "install", "resolve", "--dest", str(dest)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Workspace > Scripts > Edit > v2vz Re-prompt clip" in done.stdout + done.stderr
    client, host, body = (dest / "v2vz-client.txt").read_text().splitlines()
    assert client == V2VZ and host == str(plugins_root() / "host") and (Path(host) / "v2vz_host.py").is_file()
    assert body == str(plugins_root() / "davinci") and (Path(body) / "v2vz_resolve.py").is_file()
    assert [path.name for path in dest.glob("*.py")] == ["v2vz Re-prompt clip.py"]
    return dest / "v2vz Re-prompt clip.py"


def load_script(path: Path) -> dict:
    """The script the installed launcher runs, loaded as Resolve loads it (not run): the namespace of
    v2vz_resolve.py from the installation, with v2vz_host from line 2 of v2vz-client.txt."""
    launcher = runpy.run_path(str(path), run_name="v2vz_reprompt")
    module = launcher["load"]()
    assert module is not None, "the launcher did not find v2vz_resolve.py"
    return vars(module)


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    """`v2vz plugin install resolve --dest DIR`, then the installed script loaded as a module (not run)."""
    return load_script(install_script(tmp_path_factory.mktemp("Scripts") / "Edit"))


def client_env(served: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The script's environment in a test: the daemon's endpoint, its own output folder, the client from PATH."""
    monkeypatch.setenv("V2VZ_ENDPOINT", served["V2VZ_ENDPOINT"])
    monkeypatch.setenv("V2VZ_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("V2VZ_CLIENT", raising=False)
    return served


@pytest.fixture
def env(served, tmp_path, monkeypatch):
    return client_env(served, tmp_path, monkeypatch)


def jobs(env) -> list[dict]:
    listed = subprocess.run([V2VZ, "jobs", "--json", "--limit", "500"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def project_with_clip(fps="25", start_frame=90000, media_fps=25.0, note=NOTE, selection=False, takes="yes", **clip):
    """A timeline at 01:00:00:00 with bikes.mp4 on V1: 6 frames from source frame 50, at 4 s into the timeline.
    takes: "yes" (a Resolve with the take calls), "no" (without them) or "refused" (its AddTake returns False)."""
    timeline = (FakeTimelineWithSelection if selection else FakeTimeline)("Timeline 1", start_frame)
    clip.setdefault("source_start", 50)
    media = clip.pop("media", None) or video_item("bikes.mp4", BIKES, media_fps, 250)
    other = timeline.put(FakeTimelineItem("before", start_frame, 100, video_item("b", BIKES, media_fps, 250)))
    item = timeline.put(FakeTimelineItem("bikes.mp4", start_frame + 100, clip.pop("duration", 6), media, **clip))
    if note is not None:
        item.AddMarker(2, "Blue", "v2vz", note, 1, "")
    timeline.playhead = item.start + 3
    project = FakeProject(fps, timeline, takes)
    return FakeResolve(project), project, timeline, item, other


def check_placed(project, timeline, item, frames=6):
    assert timeline.GetTrackCount("video") == 2
    (placed,) = timeline.GetItemListInTrack("video", 2)
    assert (placed.GetStart(), placed.GetDuration()) == (item.GetStart(), item.GetDuration())
    bins = [f for f in project.media_pool.GetRootFolder().GetSubFolderList() if f.GetName() == "v2vz"]
    assert len(bins) == 1 and placed.GetMediaPoolItem() in bins[0].GetClipList()
    assert placed.GetMediaPoolItem().GetClipProperty("Frames") == str(frames)
    pattern = placed.GetMediaPoolItem().GetClipProperty("File Path")
    assert pattern.endswith("frame_%06d.png") and Path(pattern % (frames - 1)).is_file()
    assert item.GetClipColor() == "Green"


def test_places_the_edit_on_a_new_track_at_the_clips_record_frame(script, env, capsys):
    resolve, project, timeline, item, other = project_with_clip(selection=True)
    timeline.selected = [item]
    before = [(i.GetStart(), i.GetEnd(), i.GetName()) for i in timeline.GetItemListInTrack("video", 1)]
    results = script["main"](resolve)
    assert [r["state"] for r in results] == ["placed"], results
    check_placed(project, timeline, item)
    # the original is untouched: same items on V1, same range; the prompt marker kept, the job marker added
    assert [(i.GetStart(), i.GetEnd(), i.GetName()) for i in timeline.GetItemListInTrack("video", 1)] == before
    assert (item.GetSourceStartFrame(), item.GetDuration()) == (50, 6)
    markers = item.GetMarkers()
    assert markers[2]["name"] == "v2vz" and markers[2]["note"] == NOTE
    (job,) = [m for m in markers.values() if m["name"] == "v2vz job"]
    assert json.loads(job["customData"])["job"] == results[0]["job"]
    row = next(r for r in jobs(env) if r["job_id"] == results[0]["job"])
    assert (row["start"], row["frames"], row["state"]) == (50, 6, "done")
    out = capsys.readouterr().out
    assert "v2vz: 'bikes.mp4': the edit is on video track 2" in out and "edit 3/3" in out
    # with the clip still selected, a second run starts a new job (the first is placed): a take of the first's item
    again = script["main"](resolve)
    assert again[0]["state"] == "placed" and again[0]["job"] != results[0]["job"]
    assert timeline.GetTrackCount("video") == 2 and (again[0]["track"], again[0]["take"]) == (2, 2)
    assert timeline.GetItemListInTrack("video", 2)[0].GetTakesCount() == 2


@pytest.mark.parametrize(("fps", "start_frame"), [("29.97", 108000), ("24", 86400)])
def test_timelines_at_one_hour_in_their_own_fps(script, env, fps, start_frame):
    resolve, project, timeline, item, _ = project_with_clip(
        fps, start_frame, media_fps=float(fps), selection=True, duration=4
    )
    timeline.playhead = start_frame  # not on the clip: the selection wins
    timeline.selected = [item]
    results = script["main"](resolve)
    assert [r["state"] for r in results] == ["placed"], results
    check_placed(project, timeline, item, frames=4)
    assert timeline.GetItemListInTrack("video", 2)[0].GetStart() == start_frame + 100


MISSING = "v2vz: no v2vz marker on 'bikes.mp4': " + host().marker_help()
MARKED = "v2vz: the v2vz marker on 'bikes.mp4':"
WHAT_TO_WRITE = "write a line `source: <what the clip shows>` and a line `prompt: <the edit>`"


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        (None, MISSING),
        ("a horse", f"{MARKED} it has no `source:` and no `prompt:` line: {WHAT_TO_WRITE}"),
        ("source: bikes\nprompt:", f"{MARKED} it has no `prompt:` line: {WHAT_TO_WRITE}"),
    ],
)
def test_a_missing_or_malformed_marker_says_what_to_add(script, env, capsys, note, expected):
    resolve, _, timeline, item, _ = project_with_clip(note=note)
    count = len(jobs(env))
    results = script["main"](resolve)
    assert results[0]["state"] == "refused"
    assert capsys.readouterr().out.strip() == expected
    assert timeline.GetTrackCount("video") == 1 and item.GetClipColor() == "" and len(jobs(env)) == count


def test_a_second_run_re_attaches_to_the_running_job(script, env, tmp_path, monkeypatch, capsys):
    # The first run loses its client after the `submitted` line (Resolve closed the script): the job keeps running.
    wrapper = tmp_path / "client-that-dies"
    wrapper.write_text(f'#!/bin/sh\n"{V2VZ}" "$@" | head -n 1\n')
    wrapper.chmod(0o755)
    slow = NOTE.replace("--steps 3", "--steps 8 --fast")
    resolve, project, timeline, item, _ = project_with_clip(note=slow, duration=4)
    count = len(jobs(env))
    monkeypatch.setenv("V2VZ_CLIENT", str(wrapper))
    first = script["main"](resolve)
    assert first[0]["state"] == "failed" and "run the script again to re-attach" in first[0]["message"]
    assert item.GetClipColor() == "Pink" and timeline.GetTrackCount("video") == 1
    job_id = first[0]["job"]
    (marker,) = [m for m in item.GetMarkers().values() if m["name"] == "v2vz job"]
    assert json.loads(marker["customData"])["job"] == job_id
    assert next(r for r in jobs(env) if r["job_id"] == job_id)["state"] in ("queued", "running")
    monkeypatch.delenv("V2VZ_CLIENT")
    capsys.readouterr()
    second = script["main"](resolve)
    assert second[0]["state"] == "placed" and second[0]["job"] == job_id, second
    assert f"re-attaching to job {job_id}" in capsys.readouterr().out
    assert len(jobs(env)) == count + 1  # no new job
    check_placed(project, timeline, item, frames=4)


@pytest.mark.parametrize(
    ("clip", "words"),
    [
        ({"source_start": 50, "source_end": 62}, "is retimed (it uses 12 source frames for 6 timeline frames)"),
        ({"source_start": 56, "source_end": 50}, "plays in reverse"),
        ({"media": video_item("Compound Clip 1", "", 25, 250, "Compound")}, "is a Compound item"),
        ({"media": video_item("Solid Color", "", 25, 250, "Generator")}, "is a Generator item"),
        ({"media": video_item("Text+", "", 25, 250, "Fusion Title")}, "is a Fusion Title item"),
        ({"media": video_item("odd", "", 25, 250, "Video")}, "has no media file"),
        ({"media": video_item("bikes.mp4", BIKES, 30, 250)}, "is 30 fps on a 25 fps timeline"),
    ],
)
def test_refused_items(script, env, capsys, clip, words):
    resolve, _, timeline, item, _ = project_with_clip(**clip)
    results = script["main"](resolve)
    assert results[0]["state"] == "refused" and words in results[0]["message"]
    assert words in capsys.readouterr().out
    assert timeline.GetTrackCount("video") == 1 and item.GetClipColor() == "" and list(item.GetMarkers()) == [2]


def test_a_title_without_a_media_pool_item_and_no_clip_at_all(script, env, capsys):
    resolve, _, timeline, item, _ = project_with_clip()
    item.media = None
    assert "is a generator, title or compound item" in script["main"](resolve)[0]["message"]
    timeline.playhead = item.GetEnd() + 50
    assert "no clip to edit" in script["main"](resolve)[0]["message"]


def test_no_daemon_running(script, env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("V2VZ_ENDPOINT", str(tmp_path / "nowhere" / "endpoint.json"))
    resolve, project, timeline, item, _ = project_with_clip()
    results = script["main"](resolve)
    assert results[0]["state"] == "failed"
    out = capsys.readouterr().out
    assert "the v2vz daemon is not running or not reachable: start it in a terminal with `v2vz serve`" in out
    assert item.GetClipColor() == "Pink" and timeline.GetTrackCount("video") == 1
    assert not project.media_pool.GetRootFolder().GetSubFolderList()
    assert [m["name"] for m in item.GetMarkers().values()] == ["v2vz"]
    assert not list((tmp_path / "out").glob("*"))  # the job's fresh folder went with the job that never started


def test_the_fake_keeps_resolves_quirks():
    resolve, project, timeline, item, _ = project_with_clip()
    assert hasattr(timeline, "GetSelectedClips") and "GetSelectedClips" not in dir(timeline)
    assert timeline.GetItemListInTrack("video", 5) is None and item.SetClipColor("Red") is False
    media = item.GetMediaPoolItem()
    clash = [{"mediaPoolItem": media, "startFrame": 0, "endFrame": 10, "mediaType": 1, "trackIndex": 1,
              "recordFrame": item.GetStart()}]  # fmt: skip
    assert project.media_pool.AppendToTimeline(clash) == [] and len(timeline.GetItemListInTrack("video", 1)) == 2


def test_progress_lines_restart_for_every_window(script, capsys):
    progress = script["Progress"]("shot 1")
    for window in (1, 2):
        for step in range(1, 5):
            progress({"type": "progress", "stage": "edit", "step": step, "total": 4, "window": window, "windows": 2})
    lines = [line for line in capsys.readouterr().out.splitlines() if "edit" in line]
    assert lines == [f"v2vz: 'shot 1': window {w}/2: edit {s}/4" for w in (1, 2) for s in range(1, 5)]
