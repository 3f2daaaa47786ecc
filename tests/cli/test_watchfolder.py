"""The watch folder's parts without a daemon: which files are clips, settings, the state file, output naming."""

from __future__ import annotations

import io
import json
import os
import stat
from fractions import Fraction
from pathlib import Path

import pytest
from rich.console import Console

import v2vz.client
from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditJob, EditOptions
from v2vz.watchfolder.naming import free_output
from v2vz.watchfolder.reporter import Reporter
from v2vz.watchfolder.settings import check_settings, is_matte_name, is_video, resolve_job
from v2vz.watchfolder.state import STATE_NAME, State
from v2vz.watchfolder.watcher import Watcher

from .test_timeline import FakeClient, make_clip


@pytest.mark.parametrize(
    "name, wanted",
    [
        ("shot.mp4", True),
        ("SHOT.MOV", True),
        ("take 2.mxf", True),
        ("notes.txt", False),
        (".hidden.mp4", False),
        ("~lock.mp4", False),
        ("copying.mp4.part", False),
        ("download.mov.crdownload", False),
        ("shot.mp4~", False),
    ],
)
def test_only_finished_visible_videos_are_clips(name: str, wanted: bool):
    assert is_video(name) is wanted


def test_settings_are_typed_per_key():
    values = check_settings("a.toml", {"prompt": "a jeep", "frames": 4, "steps": 20, "fast": True, "guidance": "6.5"})
    assert values == {"prompt": "a jeep", "frames": 4, "steps": 20, "fast": True, "guidance": 6.5}


@pytest.mark.parametrize(
    "data, words",
    [
        ({"stepz": 3}, ["a.toml", "unknown option", "stepz", "did you mean `steps`?"]),
        ({"zzzz": 3}, ["a.toml", "unknown option", "zzzz", "prompt, source_prompt"]),
        ({"prompt": 3}, ["a.toml", "prompt must be a string in quotes", 'prompt = "..."']),
        ({"frames": 2.5}, ["a.toml", "frames must be a whole number", "2.5"]),
        ({"frames": True}, ["a.toml", "frames must be a whole number"]),
        ({"steps": "many"}, ["a.toml", "option steps must be int", "'many'"]),
        ({"attention": "wide"}, ["a.toml", "attention must be", "dense", "'wide'"]),
    ],
)
def test_a_bad_setting_names_the_file_the_key_and_what_it_must_be(data: dict, words: list[str]):
    with pytest.raises(InvalidArgument) as caught:
        check_settings("a.toml", data)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_a_clip_waits_until_both_prompts_are_given(tmp_path: Path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"not read here")
    assert resolve_job(clip, tmp_path / "out") == (
        'shot.mp4 waits: add prompt = "..." and source_prompt = "..." to shot.toml or v2vz.toml'
    )
    (tmp_path / "v2vz.toml").write_text('source_prompt = "a car on a road"\nsteps = 30\nframes = 4\n')
    assert resolve_job(clip, tmp_path / "out") == 'shot.mp4 waits: add prompt = "..." to shot.toml or v2vz.toml'


def test_the_sidecar_overlays_the_folder_defaults(tmp_path: Path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "v2vz.toml").write_text('source_prompt = "a car"\nprompt = "a bus"\nsteps = 30\nframes = 4\n')
    (tmp_path / "shot.toml").write_text('prompt = "a jeep on snow"\nsteps = 12\npreset = "published"\n')
    job = resolve_job(clip, tmp_path / "out")
    assert isinstance(job, EditJob)
    assert (job.prompt, job.source_prompt, job.frames, job.start) == ("a jeep on snow", "a car", 4, 0)
    assert job.options == EditOptions.preset("published", steps=12)
    assert job.source == clip.resolve() and job.output == (tmp_path / "out" / "shot.mp4").resolve()


def test_a_folder_can_deliver_prores_without_audio(tmp_path: Path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "v2vz.toml").write_text(
        'source_prompt = "a car"\nprompt = "a jeep"\nformat = "mov"\ncodec = "prores_4444"\naudio = false\n'
    )
    job = resolve_job(clip, tmp_path / "out")
    assert isinstance(job, EditJob)
    assert (job.output, job.codec, job.audio) == ((tmp_path / "out" / "shot.mov").resolve(), "prores_4444", False)
    assert job.output_format.label == "ProRes 4444 in MOV"
    for bad, message in (
        ('format = "avi"', "format must be one of mp4, mov, got 'avi'"),
        ('codec = "dnxhr_hq"\nformat = "mp4"', "--codec dnxhr_hq cannot be written to shot.mp4"),
        ("audio = 1", "audio must be true or false, got 1"),
    ):
        (tmp_path / "shot.toml").write_text(bad + "\n")
        with pytest.raises(InvalidArgument, match=message.replace(".", r"\.")):
            resolve_job(clip, tmp_path / "out")


def test_broken_toml_is_one_line_that_names_the_file(tmp_path: Path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "shot.toml").write_text('prompt = "unterminated\n')
    with pytest.raises(InvalidArgument, match=r"^shot.toml is not valid TOML \(.*\): fix it$"):
        resolve_job(clip, tmp_path / "out")


def test_an_output_name_never_takes_an_earlier_edit_or_a_job_in_flight(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    assert free_output(out, "shot", set()) == (out / "shot.mp4").resolve()
    (out / "shot.mp4").write_bytes(b"earlier edit")
    assert free_output(out, "shot", set()) == (out / "shot-2.mp4").resolve()
    in_flight = {str((out / "shot-2.mp4").resolve()), str((out / "shot-3.mp4").resolve())}
    assert free_output(out, "shot", in_flight) == (out / "shot-4.mp4").resolve()


def test_the_state_file_round_trips_and_is_written_whole(tmp_path: Path):
    state = State(tmp_path / STATE_NAME)
    state.put("b.mp4", {"job_id": "j2", "order": 2, "out": "/o/b.mp4"})
    state.put("a.mp4", {"job_id": "j1", "order": 1, "out": "/o/a.mp4"})
    assert not [p for p in os.listdir(tmp_path) if p != STATE_NAME]  # no temporary file left beside it
    again = State(tmp_path / STATE_NAME)
    assert again.load() is None
    assert [name for name, _ in again.items()] == ["a.mp4", "b.mp4"]  # in submission order
    assert again.outputs() == {"/o/a.mp4", "/o/b.mp4"}
    again.drop("a.mp4")
    assert json.loads((tmp_path / STATE_NAME).read_text()) == {
        "version": 1,
        "files": {"b.mp4": {"job_id": "j2", "order": 2, "out": "/o/b.mp4"}},
    }
    assert stat.S_IMODE((tmp_path / STATE_NAME).stat().st_mode) == 0o666 & ~current_umask()  # as open() makes it


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    "content, words", [("{not json", ["unreadable", STATE_NAME]), ('{"files": 3}', ["not a watch state file"])]
)
def test_an_unreadable_state_file_is_a_warning_and_remembers_nothing(tmp_path: Path, content: str, words: list[str]):
    (tmp_path / STATE_NAME).write_text(content)
    state = State(tmp_path / STATE_NAME)
    warning = state.load()
    assert warning is not None and warning.startswith("warning: ignoring")
    for word in words:
        assert word in warning
    assert state.items() == []


# ---------------------------------------------------------------------------------------------------------------
# Local edits: edit-only words, a matte, saved masks (issue 25)

PROMPTS = 'source_prompt = "a red car on a road"\nprompt = "a blue car on a road"\nframes = 4\n'


def test_local_edit_keys_are_typed(tmp_path: Path):
    values = check_settings("a.toml", {"matte": "m.mp4", "matte_start": 3, "save_mask": "masks", "edit_only": "car"})
    assert values == {"matte": "m.mp4", "matte_start": 3, "save_mask": "masks", "edit_only": "car"}
    for data, message in (
        ({"matte": 3}, 'a.toml: matte must be a path in quotes (matte = "..."), got 3'),
        ({"save_mask": ""}, "a.toml: save_mask must be a path in quotes"),
        ({"matte_start": "2"}, "a.toml: matte_start must be a whole number, got '2'"),
    ):
        with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_settings("a.toml", data)


def test_a_sidecar_gives_a_local_edit_with_paths_beside_the_clip_and_masks_beside_the_edits(tmp_path: Path):
    clip, out = tmp_path / "shot.mp4", tmp_path / "out"
    clip.write_bytes(b"x")
    (tmp_path / "car.mp4").write_bytes(b"matte")
    (tmp_path / "shot.toml").write_text(
        PROMPTS + 'edit_only = "car"\nmatte = "car.mp4"\nmatte_start = 2\nmatte_feather = 3\nsave_mask = "masks"\n'
    )
    job = resolve_job(clip, out)
    assert isinstance(job, EditJob)
    assert (job.options.edit_only, job.options.matte_feather, job.matte_start) == ("car", 3.0, 2)
    assert job.matte == tmp_path / "car.mp4" and job.matte.is_absolute()
    assert job.mask_dir == out / "masks" / "shot" and job.mask_dir.is_absolute()  # a folder per edit
    (out / "masks" / "shot").mkdir(parents=True)  # an earlier edit's masks: never written over
    again = resolve_job(clip, out)
    assert (again.output.name, again.mask_dir) == ("shot-2.mp4", out / "masks" / "shot-2")
    (tmp_path / "shot.toml").write_text(PROMPTS + f'matte = "{tmp_path / "car.mp4"}"\nsave_mask = "/abs/m"\n')
    job = resolve_job(clip, out)
    assert (job.matte, job.mask_dir) == (tmp_path / "car.mp4", Path("/abs/m/shot"))


def test_a_missing_matte_makes_the_clip_wait_and_a_bad_word_is_one_line(tmp_path: Path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "shot.toml").write_text(PROMPTS + 'matte = "mattes/car.mp4"\n')
    assert resolve_job(clip, tmp_path / "out") == (
        f"shot.mp4 waits: its matte {tmp_path / 'mattes' / 'car.mp4'} is not there (matte in shot.toml or v2vz.toml)"
    )
    (tmp_path / "shot.toml").write_text(PROMPTS + 'edit_only = "boat"\n')
    with pytest.raises(InvalidArgument) as caught:
        resolve_job(clip, tmp_path / "out")
    assert str(caught.value) == (
        "edit-only word(s) 'boat' are in neither prompt; the prompts' words: a, red, car, on, road, blue"
    )
    (tmp_path / "shot.toml").write_text(PROMPTS + 'save_mask = "masks"\n')
    with pytest.raises(InvalidArgument, match="--save-mask saves the mask of a local edit"):
        resolve_job(clip, tmp_path / "out")


@pytest.mark.parametrize("name, wanted", [("shot.matte.mp4", True), ("SHOT.MATTE.MOV", True), ("matte.mp4", False)])
def test_a_video_named_as_a_matte_is_one(name: str, wanted: bool):
    assert is_matte_name(name) is wanted


class _WatchClient(FakeClient):
    """The fake daemon's client (tests/cli/test_timeline.py) with the watcher's follow(..., reconnect=False)."""

    def follow(self, job_id: str, after: int = 0, reconnect: bool = True):
        return super().follow(job_id, after)


def _watch_once(in_dir: Path, out_dir: Path, monkeypatch) -> str:
    """One in-process `v2vz watch --once` against the fake daemon; its lines."""
    monkeypatch.setattr(v2vz.client, "Client", _WatchClient)
    text = io.StringIO()
    with Reporter(Console(file=text, width=500)) as reporter:
        Watcher(in_dir, out_dir, 0.05, True, reporter).run()
    return text.getvalue()


def _dropped(tmp_path: Path, sidecar: str) -> tuple[Path, Path]:
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    (in_dir / "v2vz.toml").write_text(PROMPTS)  # prompts for every video: a matte taken for a clip would be edited
    make_clip(in_dir / "shot.mp4", Fraction(24), 6)
    make_clip(in_dir / "car.mp4", Fraction(24), 6)  # the matte, under a name of no rule: the sidecar names it
    make_clip(in_dir / "road.matte.mp4", Fraction(24), 6)  # a matte by its name, whose sidecar has not come yet
    (in_dir / "shot.toml").write_text(sidecar)
    return in_dir, out_dir


def test_the_watcher_never_edits_a_matte_and_files_it_away_with_its_clip(tmp_path: Path, fake, monkeypatch):
    in_dir, out_dir = _dropped(tmp_path, 'edit_only = "car"\nmatte = "car.mp4"\n')
    lines = _watch_once(in_dir, out_dir, monkeypatch)
    (job,) = [entry["job"] for entry in fake.jobs.values()]
    assert (job.source, job.matte, job.options.edit_only) == (in_dir / "shot.mp4", in_dir / "car.mp4", "car")
    assert f"shot.mp4 -> {out_dir / 'shot.mp4'}" in lines, lines
    assert "car.mp4" not in lines.replace("shot.mp4", "") and "road" not in lines, lines
    assert sorted(os.listdir(in_dir / "done")) == ["car.mp4", "shot.mp4", "shot.toml"]  # the matte went with it
    assert sorted(os.listdir(in_dir)) == [".v2vz-watch.json", "done", "road.matte.mp4", "v2vz.toml"]


def test_a_word_in_neither_prompt_fails_the_clip_with_one_line_and_its_matte_goes_with_it(
    tmp_path: Path, fake, monkeypatch
):
    in_dir, out_dir = _dropped(tmp_path, 'edit_only = "boat"\nmatte = "car.mp4"\n')
    lines = _watch_once(in_dir, out_dir, monkeypatch)
    assert not fake.jobs
    reason = "edit-only word(s) 'boat' are in neither prompt; the prompts' words: a, red, car, on, road, blue"
    assert f"shot.mp4 failed: {reason}" in lines.splitlines(), lines
    assert (in_dir / "failed" / "shot.error.txt").read_text() == reason + "\n"
    assert sorted(os.listdir(in_dir / "failed")) == ["car.mp4", "shot.error.txt", "shot.mp4", "shot.toml"]
    assert not (in_dir / "car.mp4").exists()  # never left behind to be taken for a clip
