"""Takes and preview-then-final of the installed Resolve menu script, against tests/fake_resolve.py and a real `tiny`
daemon: re-prompts of a clip become takes of one v2vz item where Resolve has takes (new tracks where it has not),
and a preview is placed at once, then replaced in place by its final."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..fake_resolve import FakeTimelineItem, FakeTimelineItemWithTakes, video_item
from .test_resolve_script import V2VZ, client_env, install_script, jobs, load_script, project_with_clip


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    return load_script(install_script(tmp_path_factory.mktemp("Scripts") / "Edit"))


@pytest.fixture
def env(resolve_daemon, tmp_path, monkeypatch):
    return client_env(resolve_daemon, tmp_path, monkeypatch)


PROMPTS = ("people riding horses on a road", "people riding camels on a road", "people riding zebras on a road")
FRAMES = 4


def note(prompt: str, preview: bool = False) -> str:
    lines = ["source: people riding bikes on a road", f"prompt: {prompt}", "options: --steps 2"]
    return "\n".join(lines + (["preview: yes"] if preview else []))


def reprompt(script, resolve, item, prompt: str, preview: bool = False) -> dict:
    """Change the clip's v2vz marker to `prompt` and run the script: its one result."""
    item.markers[2]["note"] = note(prompt, preview)
    (result,) = script["main"](resolve)
    return result


def folder_of(media) -> Path:
    return Path(media.GetClipProperty("File Path")).parent


def bin_clips(project) -> list:
    (found,) = [f for f in project.media_pool.GetRootFolder().GetSubFolderList() if f.GetName() == "v2vz"]
    return found.GetClipList()


def check_frames(media, frames=FRAMES) -> None:
    pattern = media.GetClipProperty("File Path")
    assert media.GetClipProperty("Frames") == str(frames)
    assert all(Path(pattern % index).is_file() for index in range(frames))


def test_three_re_prompts_are_three_takes_of_one_v2vz_item(script, env, capsys):
    resolve, project, timeline, item, _ = project_with_clip(note=note(PROMPTS[0]), duration=FRAMES)
    results = [reprompt(script, resolve, item, prompt) for prompt in PROMPTS]
    assert [r["state"] for r in results] == ["placed"] * 3, results
    assert [(r["track"], r["take"]) for r in results] == [(2, None), (2, 2), (2, 3)]
    assert timeline.GetCurrentVideoItem() is not item  # the playhead finds the v2vz item: it stands for its clip
    assert timeline.GetTrackCount("video") == 2 and timeline.GetTrackName("video", 2) == "v2vz"
    (v2vz,) = timeline.GetItemListInTrack("video", 2)
    assert isinstance(v2vz, FakeTimelineItemWithTakes)
    assert (v2vz.GetTakesCount(), v2vz.GetSelectedTakeIndex()) == (3, 3)  # the newest is the one shown
    assert (v2vz.GetStart(), v2vz.GetDuration()) == (item.GetStart(), item.GetDuration())
    takes = [v2vz.GetTakeByIndex(index)["mediaPoolItem"] for index in (1, 2, 3)]
    assert [media.GetName() for media in takes] == [f"v2vz: {prompt}" for prompt in PROMPTS]
    assert len({folder_of(media) for media in takes}) == 3 and v2vz.GetMediaPoolItem() is takes[2]
    for media, result in zip(takes, results, strict=True):
        check_frames(media)
        assert media.GetMetadata("Comments") == f"v2vz job {result['job']}: {media.GetName()[len('v2vz: ') :]}"
    assert bin_clips(project) == takes
    # the job markers keep every job and its prompt; the original clip is untouched
    markers = [json.loads(m["customData"]) for m in item.GetMarkers().values() if m["name"] == "v2vz job"]
    assert sorted((m["job"], m["prompt"], m["kind"]) for m in markers) == sorted(
        (r["job"], prompt, "edit") for r, prompt in zip(results, PROMPTS, strict=True)
    )
    assert item.GetClipColor() == "Green" and (item.GetSourceStartFrame(), item.GetDuration()) == (50, FRAMES)
    out = capsys.readouterr().out
    assert "the edit is on video track 2, take 3 at frame" in out and "no takes" not in out


@pytest.mark.parametrize(
    ("takes", "runs", "why"),
    [
        ("no", 3, "this Resolve has no takes (TimelineItem.AddTake): the edit goes on a new track instead"),
        ("refused", 2, "Resolve did not add the edit as a take (AddTake returned False): the edit goes on a new track"),
    ],
)
def test_without_takes_each_re_prompt_goes_on_a_new_track(script, env, capsys, takes, runs, why):
    resolve, project, timeline, item, _ = project_with_clip(note=note(PROMPTS[0]), duration=FRAMES, takes=takes)
    results = [reprompt(script, resolve, item, prompt) for prompt in PROMPTS[:runs]]
    assert [r["state"] for r in results] == ["placed"] * runs, results
    tracks = list(range(2, 2 + runs))
    assert [(r["track"], r["take"]) for r in results] == [(track, None) for track in tracks]
    assert timeline.GetTrackCount("video") == 1 + runs
    for track, prompt in zip(tracks, PROMPTS, strict=False):
        (placed,) = timeline.GetItemListInTrack("video", track)
        assert (placed.GetStart(), placed.GetDuration()) == (item.GetStart(), item.GetDuration())
        assert placed.GetMediaPoolItem().GetName() == f"v2vz: {prompt}" and placed.GetTakesCount() in (None, 0)
        check_frames(placed.GetMediaPoolItem())
    assert capsys.readouterr().out.count(f"v2vz: 'bikes.mp4': {why}") == runs - 1  # every run after the first


def test_a_preview_then_its_final_replaces_the_preview_take(script, env, capsys):
    resolve, project, timeline, item, _ = project_with_clip(note=note(PROMPTS[0]), duration=FRAMES)
    first = reprompt(script, resolve, item, PROMPTS[0])
    capsys.readouterr()
    result = reprompt(script, resolve, item, PROMPTS[1], preview=True)
    rows = {row["job_id"]: row for row in jobs(env)}
    assert result["state"] == "placed" and result["kind"] == "final", result
    assert rows[result["preview"]]["preview"] is True and rows[result["job"]]["state"] == "done"
    out = capsys.readouterr().out
    assert "the preview is on video track 2, take 2 at frame" in out
    assert "the final replaced the preview on video track 2, take 2 at frame" in out
    (v2vz,) = timeline.GetItemListInTrack("video", 2)
    assert (v2vz.GetTakesCount(), v2vz.GetSelectedTakeIndex(), result["take"]) == (2, 2, 2)
    assert (v2vz.GetStart(), v2vz.GetDuration()) == (item.GetStart(), item.GetDuration())
    final = v2vz.GetTakeByIndex(2)["mediaPoolItem"]
    assert final.GetName() == f"v2vz: {PROMPTS[1]}" and "(final of preview" in final.GetMetadata("Comments")
    check_frames(final)
    assert v2vz.GetTakeByIndex(1)["mediaPoolItem"].GetName() == f"v2vz: {PROMPTS[0]}"  # the first edit stays
    markers = {m["kind"]: m for m in job_markers(item)}
    preview_dir = Path(markers["preview"]["dir"])
    assert markers["final"]["preview_dir"] == str(preview_dir) and markers["edit"]["job"] == first["job"]
    assert not preview_dir.exists()  # the preview's frames folder is gone, and its clip left the bin
    assert [folder_of(media) for media in bin_clips(project)] == [folder_of(v2vz.GetTakeByIndex(1)["mediaPoolItem"]),
                                                                  folder_of(final)]  # fmt: skip
    assert item.GetClipColor() == "Green"


def test_a_preview_then_its_final_replaces_the_preview_clip(script, env, capsys):
    """The preview as the clip's first edit, on a Resolve without takes: the final replaces the preview's clip."""
    resolve, project, timeline, item, _ = project_with_clip(note=note(PROMPTS[0]), duration=FRAMES, takes="no")
    result = reprompt(script, resolve, item, PROMPTS[0], preview=True)
    assert result["state"] == "placed" and (result["track"], result["take"]) == (2, None), result
    assert timeline.GetTrackCount("video") == 2
    (placed,) = timeline.GetItemListInTrack("video", 2)
    assert (placed.GetStart(), placed.GetDuration()) == (item.GetStart(), item.GetDuration())
    assert placed.GetMediaPoolItem().GetName() == f"v2vz: {PROMPTS[0]}"
    check_frames(placed.GetMediaPoolItem())
    preview = next(m for m in job_markers(item) if m["kind"] == "preview")
    assert not Path(preview["dir"]).exists() and bin_clips(project) == [placed.GetMediaPoolItem()]
    assert "the final replaced the preview on video track 2 at frame" in capsys.readouterr().out


def job_markers(item) -> list[dict]:
    return [json.loads(m["customData"]) for m in item.GetMarkers().values() if m["name"] == "v2vz job"]


def client_wrapper(tmp_path: Path, command: str, body: str) -> Path:
    """A client that runs `v2vz COMMAND ...` through `body` (sh: "$@" are the arguments), anything else as it is."""
    wrapper = tmp_path / f"client-{command}"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = {command} ]; then\n{body}\nfi\nexec "{V2VZ}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


DIES = f'"{V2VZ}" "$@" | head -n 1; exit 0'  # the client is gone after the `submitted` line: Resolve closed


def test_a_failing_final_keeps_the_preview(script, env, tmp_path, monkeypatch, capsys):
    # The final's fresh folder is taken by a file before the client starts: `v2vz final` refuses its output.
    taken = 'out=$(for a in "$@"; do [ "$p" = --out ] && echo "$a"; p=$a; done); rmdir "$out" && touch "$out"'
    monkeypatch.setenv("V2VZ_CLIENT", str(client_wrapper(tmp_path, "final", taken)))
    resolve, project, timeline, item, _ = project_with_clip(note=note(PROMPTS[0]), duration=FRAMES)
    result = reprompt(script, resolve, item, PROMPTS[0], preview=True)
    assert result["state"] == "failed" and result["kind"] == "final", result
    assert "the preview stays on the timeline" in result["message"] and "v2vz could not start" in result["message"]
    assert result["message"] in capsys.readouterr().out and item.GetClipColor() == "Pink"
    (placed,) = timeline.GetItemListInTrack("video", 2)
    preview = next(m for m in job_markers(item) if m["kind"] == "preview")
    assert folder_of(placed.GetMediaPoolItem()) == Path(preview["dir"]) and Path(preview["dir"]).is_dir()
    assert (placed.GetStart(), placed.GetDuration()) == (item.GetStart(), item.GetDuration())
    check_frames(placed.GetMediaPoolItem())
    assert placed.GetMediaPoolItem().GetName() == f"v2vz: {PROMPTS[0]} (preview)"


def test_a_preview_and_a_final_running_when_resolve_closed_are_re_attached(script, env, tmp_path, monkeypatch, capsys):
    # Run 1 loses the preview's client, run 2 re-attaches to the preview, places it and loses the final's client,
    # run 3 re-attaches to the final, which replaces the preview.
    resolve, project, timeline, item, _ = project_with_clip(note=note(PROMPTS[0], preview=True), duration=FRAMES)
    monkeypatch.setenv("V2VZ_CLIENT", str(client_wrapper(tmp_path, "edit", DIES)))
    (first,) = script["main"](resolve)
    assert first["state"] == "failed" and first["kind"] == "preview" and "re-attach" in first["message"], first
    assert timeline.GetTrackCount("video") == 1
    monkeypatch.setenv("V2VZ_CLIENT", str(client_wrapper(tmp_path, "final", DIES)))
    (second,) = script["main"](resolve)
    assert f"re-attaching to preview job {first['job']}" in capsys.readouterr().out
    assert second["state"] == "failed" and second["kind"] == "final" and second["preview"] == first["job"], second
    assert "run the script again to re-attach" in second["message"] and "the preview stays" in second["message"]
    (placed,) = timeline.GetItemListInTrack("video", 2)
    assert placed.GetMediaPoolItem().GetName() == f"v2vz: {PROMPTS[0]} (preview)"
    monkeypatch.delenv("V2VZ_CLIENT")
    (third,) = script["main"](resolve)
    assert third["state"] == "placed" and third["job"] == second["job"] and third["kind"] == "final", third
    assert f"re-attaching to final job {second['job']}" in capsys.readouterr().out
    markers = job_markers(item)  # the preview and its final: nothing started twice
    assert sorted((m["kind"], m["job"]) for m in markers) == [("final", second["job"]), ("preview", first["job"])]
    (placed,) = timeline.GetItemListInTrack("video", 2)
    assert (placed.GetStart(), placed.GetDuration()) == (item.GetStart(), item.GetDuration())
    assert placed.GetMediaPoolItem().GetName() == f"v2vz: {PROMPTS[0]}" and item.GetClipColor() == "Green"
    assert not Path(next(m for m in job_markers(item) if m["kind"] == "preview")["dir"]).exists()


def test_a_preview_line_that_is_neither_yes_nor_no(script, env, capsys):
    resolve, _, timeline, item, _ = project_with_clip(note=note(PROMPTS[0]) + "\npreview: maybe")
    (result,) = script["main"](resolve)
    assert result["state"] == "refused" and "says 'preview: maybe': write 'preview: yes'" in result["message"]
    assert timeline.GetTrackCount("video") == 1


def test_the_fakes_takes_follow_the_readme():
    media = [video_item(f"m{index}", f"/x/{index}/frame_%06d.png", 25, 6) for index in range(3)]
    plain = FakeTimelineItem("old", 100, 6, media[0])
    assert "AddTake" not in dir(plain) and plain.AddTake(media[1]) is None
    item = FakeTimelineItemWithTakes("new", 100, 6, media[0])
    assert "AddTake" in dir(item) and (item.GetTakesCount(), item.GetSelectedTakeIndex()) == (0, 0)
    assert item.AddTake(media[1]) and (item.GetTakesCount(), item.GetSelectedTakeIndex()) == (2, 1)
    assert item.GetTakeByIndex(2) == {"startFrame": 0, "endFrame": 6, "mediaPoolItem": media[1]}
    assert item.AddTake(media[2], 0, 4) and item.SelectTakeByIndex(3) and item.GetDuration() == 4  # a short take
    assert item.DeleteTakeByIndex(1) and item.GetSelectedTakeIndex() == 2 and item.GetMediaPoolItem() is media[2]
    assert not item.SelectTakeByIndex(3) and item.GetTakeByIndex(0) is None
    assert item.FinalizeTake() and item.GetTakesCount() == 0 and item.GetMediaPoolItem() is media[2]
    refusing = FakeTimelineItemWithTakes("r", 100, 6, media[0], refuse_takes=True)
    assert refusing.AddTake(media[1]) is False and refusing.GetTakesCount() == 0
    assert media[0].SetClipProperty("Clip Name", "v2vz: x") and media[0].GetName() == "v2vz: x"
    assert not media[0].SetClipProperty("File Path", "/elsewhere")


def test_a_clip_without_a_free_frame_loses_its_oldest_finished_job_marker(script, tmp_path):
    item = FakeTimelineItem("short", 100, 3, video_item("bikes.mp4", "/x/bikes.mp4", 25, 250))
    item.AddMarker(0, "Blue", "v2vz", note(PROMPTS[0]), 1, "")
    for frame, (job, state) in enumerate([("old", "placed"), ("running", None)], start=1):
        folder = tmp_path / job
        folder.mkdir()
        if state:
            (folder / "v2vz-state.json").write_text(json.dumps({"job": job, "state": state}))
        data = {"job": job, "dir": str(folder), "kind": "edit", "submitted": f"2026-01-0{frame}T00:00:00"}
        item.AddMarker(frame, "Yellow", "v2vz job", f"v2vz job {job}", 1, json.dumps(data))
    new = {"job": "new", "dir": str(tmp_path / "new"), "kind": "preview", "prompt": PROMPTS[1]}
    assert script["add_job_marker"](item, new)
    assert sorted(m["job"] for m in job_markers(item)) == ["new", "running"]  # the running job's marker stays
    assert item.GetMarkers()[1]["note"] == f"v2vz job new (preview): {PROMPTS[1]}"
    assert not script["add_job_marker"](item, {**new, "job": "another"})  # only running jobs left: no room
    assert [m["job"] for m in script["running_jobs"](item)] == ["new", "running"]
