"""Takes, previews and finals, frame-sequence takes (issue 23 items 1, 4, 5, 11, 16): the names and files a take owns.

The first part needs no daemon; the second runs the installed `v2vz` against a real `v2vz serve --model tiny`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v2vz.api import takes
from v2vz.api.job import EditJob
from v2vz.cli.sample import make_sample_clip
from v2vz.watchfolder.settings import resolve_job
from v2vz_engine import media
from v2vz_engine.media.writers import sequence_audio_path

from ..cli_kit import jsonl
from ..cli_kit import run_in as run
from ..conftest import serve_tiny

V2VZ = str(Path(sys.executable).with_name("v2vz"))
BALL = ["-s", "a red ball", "-p", "a blue ball", "--steps", "2"]


def job(tmp_path: Path, **changes) -> EditJob:
    fields = dict(source=tmp_path / "shot.mov", prompt="a jeep on snow", source_prompt="a car on a road")
    return EditJob(**(fields | changes))


# --- without a daemon --------------------------------------------------------------------------------------------


def test_a_reserved_record_names_its_own_take_never_take_one(tmp_path):
    first = takes.reserve_take(tmp_path, "shot", "mp4", True, record=takes.take_record(job(tmp_path), "reserved"))
    second = takes.reserve_take(tmp_path, "shot", "mp4", True, record=takes.take_record(job(tmp_path), "reserved"))
    assert (first.number, second.number) == (1, 2)
    record = takes.read_sidecar(second.sidecar)
    assert record["output"] == str(tmp_path / "shot-v2vz-t2-preview.mp4") == str(second.output)
    assert takes.job_from_record(record).output == second.output and takes.job_from_record(record).take == 2


def test_removing_a_take_spares_a_file_put_at_its_name_since(tmp_path):
    output = tmp_path / "shot-v2vz-t1-preview.mp4"
    wav = tmp_path / "other.wav"
    output.write_bytes(b"the preview as the job wrote it")
    wav.write_bytes(b"the job's audio")
    written = job(tmp_path, output=output, take=1, preview=True)
    record = takes.take_record(written, "done", output=str(output), files=[str(output), str(wav)])
    sidecar = takes.write_sidecar(takes.sidecar_path(output), record)
    time.sleep(0.01)
    output.unlink()
    output.write_bytes(b"a user's own clip, put at that name later")
    removed = takes.remove_take_files(takes.read_sidecar(sidecar), sidecar)
    assert sorted(p.name for p in removed) == ["other.wav", "shot-v2vz-t1-preview.mp4.v2vz.json"]
    assert output.read_bytes() == b"a user's own clip, put at that name later"


def test_a_stray_huge_take_number_never_blocks_the_takes_of_its_clip(tmp_path):
    (tmp_path / "shot-v2vz-t999999.mp4").write_bytes(b"stray")
    (tmp_path / "shot-v2vz-t123456789012345678901234567890.mp4").write_bytes(b"stray")
    made = [takes.reserve_take(tmp_path, "shot", "mp4").number for _ in range(2)]
    assert made == [1, 2]
    for number in made:
        job(tmp_path, output=tmp_path / f"shot-v2vz-t{number}.mp4", take=number).validate()
    (tmp_path / "shot-v2vz-t5.mp4").write_bytes(b"a real take")
    assert takes.reserve_take(tmp_path, "shot", "mp4").number == 6  # the strays do not count, real takes do


def test_the_cli_leaves_no_reservation_behind_a_stray_take(tmp_path):
    clip = make_sample_clip(tmp_path / "shot.mp4", frames=4, width=64, height=64)
    (tmp_path / "shot-v2vz-t999999.mp4").write_bytes(b"stray")
    env = {**os.environ, "V2VZ_ENDPOINT": str(tmp_path / "nobody" / "endpoint.json")}
    done = run(["edit", str(clip), "--frames", "2", *BALL], env)
    assert "take must be" not in done.stderr and "Traceback" not in done.stderr
    assert "daemon" in done.stderr.lower() and done.returncode != 0  # refused for the missing daemon, not the name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot-v2vz-t999999.mp4", "shot.mp4"]


@pytest.mark.parametrize("name", ["pct%04d.mov", "100%done.mov", "a%d.mp4"])
def test_a_clip_named_like_a_frame_pattern_gets_takes_and_watch_folder_edits(tmp_path, name):
    take = takes.reserve_take(tmp_path, takes.take_stem(Path(name)), "mp4")
    assert "%" not in take.output.name
    job(tmp_path, source=tmp_path / name, output=take.output, take=take.number).validate()
    clip = tmp_path / "in" / name
    clip.parent.mkdir()
    clip.write_bytes(b"not read here")
    (clip.parent / "v2vz.toml").write_text('source_prompt = "a car"\nprompt = "a jeep"\n')
    watched = resolve_job(clip, tmp_path / "out")
    assert isinstance(watched, EditJob) and "%" not in watched.output.name
    watched.validate()


def test_each_frame_pattern_has_its_own_sidecar_and_wav(tmp_path):
    patterns = ["shot_%04d.exr", "shot.%04d.exr", "shot-%04d.exr", "shot%04d.exr", "shot_%06d.exr"]
    sidecars = {takes.sidecar_path(tmp_path / name) for name in patterns}
    wavs = {sequence_audio_path(tmp_path / name) for name in patterns}
    assert len(sidecars) == len(wavs) == len(patterns)
    assert takes.sidecar_path(tmp_path / "shot_%04d.exr").name == "shot_####.exr.v2vz.json"
    assert sequence_audio_path(tmp_path / "shot.%04d.exr").name == "shot.####.wav"
    assert takes.sidecar_of(tmp_path / "shot.0012.exr") == tmp_path / "shot.####.exr.v2vz.json"
    (tmp_path / "old.exr.v2vz.json").write_text("{}")  # an earlier version's record is still found
    assert takes.sidecar_of(tmp_path / "old_0012.exr") == tmp_path / "old.exr.v2vz.json"


def test_local_takes_record_the_source_as_an_absolute_path(tmp_path, monkeypatch):
    from v2vz.cli import edit

    ran: list[EditJob] = []
    monkeypatch.setattr(edit, "run_local", lambda job, *args: ran.append(job))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shot.mp4").write_bytes(b"not read here")
    edit.run_edit(job(tmp_path, source=Path("shot.mp4")), edit.TakePlan(), local=True, jsonl=False, quiet=True)
    (ran_job,) = ran
    assert ran_job.source == tmp_path.resolve() / "shot.mp4" and ran_job.output == tmp_path / "shot-v2vz-t1.mp4"
    record = takes.read_sidecar(tmp_path / "shot-v2vz-t1.mp4.v2vz.json")
    assert record["job"]["source"] == str(tmp_path.resolve() / "shot.mp4")


# --- with a daemon -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(model_cache):
    with serve_tiny(model_cache, "v2vz-r3t-") as (env, root, process):
        yield env, root, process


def clip_in(folder: Path, name: str = "shot.mp4", audio: bool = False) -> Path:
    return make_sample_clip(folder / name, frames=8, width=64, height=64, audio=audio)


def preview(env: dict, clip: Path) -> dict:
    done = run(["edit", str(clip), "--frames", "2", *BALL, "--preview", "--events", "jsonl"], env)
    assert done.returncode == 0, done.stderr
    return jsonl(done.stdout)[0]


def test_a_final_spares_a_users_file_put_at_its_previews_name(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path)
    assert preview(env, clip)["take"] == 1
    preview_file = tmp_path / "shot-v2vz-t1-preview.mp4"
    preview_file.unlink()
    preview_file.write_bytes(b"a user's own file at the preview's name")
    final = run(["final", str(tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json")], env)
    assert final.returncode == 0, final.stderr
    assert preview_file.read_bytes() == b"a user's own file at the preview's name"
    assert not (tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json").exists()
    record = json.loads((tmp_path / "shot-v2vz-t1.mp4.v2vz.json").read_text())
    assert (record["state"], record["take"], record["preview"]) == ("done", 1, False)
    assert media.probe(tmp_path / "shot-v2vz-t1.mp4").frame_count == 2


def test_a_final_of_a_preview_not_done_yet_is_refused_and_removes_nothing(served, tmp_path):
    """A queued preview's reserved record once named take 1's preview whatever its take: its final removed take 1."""
    env, _, _ = served
    clip = clip_in(tmp_path)
    preview(env, clip)
    first = tmp_path / "shot-v2vz-t1-preview.mp4"
    kept = first.read_bytes()
    running, slow = slow_edit(env, clip)  # take 2 runs; the preview of take 3 waits behind it
    args = [V2VZ, "edit", str(clip), "--frames", "2", *BALL, "--preview", "--events", "jsonl"]
    queued = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    third = json.loads(queued.stdout.readline())
    assert third["take"] == 3
    sidecar = tmp_path / "shot-v2vz-t3-preview.mp4.v2vz.json"
    final = subprocess.Popen(
        [V2VZ, "final", str(sidecar), "--out", str(tmp_path / "mine.mp4"), "-q"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    run(["cancel", slow["job_id"]], env)
    _, stderr = final.communicate(timeout=120)
    ended(running)
    ended(queued)
    assert first.read_bytes() == kept and sidecar.exists()
    assert final.returncode == 2 and stderr.startswith("error: ") and "not done yet" in stderr
    assert "shot-v2vz-t3-preview.mp4" in stderr and not (tmp_path / "mine.mp4").exists()


def test_a_final_whose_client_was_lost_still_removes_its_preview(served, tmp_path):
    """The final's end removes the preview (the engine, in the daemon), not the client: with the client killed
    right after submitting, the preview still goes once the final is done, and a second `final` says it is made."""
    env, _, _ = served
    clip = clip_in(tmp_path)
    preview(env, clip)
    preview_file = tmp_path / "shot-v2vz-t1-preview.mp4"
    lost = subprocess.Popen(
        [V2VZ, "final", str(preview_file), "--events", "jsonl"], env=env, stdout=subprocess.PIPE, text=True
    )
    submitted = json.loads(lost.stdout.readline())
    lost.kill()  # the client goes before the final is done
    lost.wait(10)
    lost.stdout.close()
    assert run(["attach", submitted["job_id"], "-q"], env).returncode == 0
    assert (tmp_path / "shot-v2vz-t1.mp4").exists()
    assert not preview_file.exists() and not (tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json").exists()
    final_record = takes.read_sidecar(tmp_path / "shot-v2vz-t1.mp4.v2vz.json")
    assert final_record["state"] == "done" and final_record["preview"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot-v2vz-t1.mp4", "shot-v2vz-t1.mp4.v2vz.json", "shot.mp4"]


def test_a_final_made_without_removing_its_preview_is_finished_by_the_next_final(served, tmp_path):
    """A final whose preview is still there (made by an older version, or its files were busy): `v2vz final` again
    removes the preview and says the final is made, instead of "the take exists"."""
    env, _, _ = served
    clip = clip_in(tmp_path)
    preview(env, clip)
    preview_file = tmp_path / "shot-v2vz-t1-preview.mp4"
    kept = run(["final", str(preview_file), "--keep-preview"], env)
    assert kept.returncode == 0, kept.stderr
    assert preview_file.exists() and (tmp_path / "shot-v2vz-t1.mp4").exists()
    again = run(["final", str(preview_file)], env)
    assert again.returncode == 0, again.stderr
    assert "made already" in again.stderr
    assert not preview_file.exists() and not (tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json").exists()
    assert media.probe(tmp_path / "shot-v2vz-t1.mp4").frame_count == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot-v2vz-t1.mp4", "shot-v2vz-t1.mp4.v2vz.json", "shot.mp4"]


def test_a_preview_moved_with_its_sidecar_goes_with_its_final(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path)
    preview(env, clip)
    moved = tmp_path / "review"
    moved.mkdir()
    for name in ("shot-v2vz-t1-preview.mp4", "shot-v2vz-t1-preview.mp4.v2vz.json"):
        shutil.move(tmp_path / name, moved / name)
    final = run(["final", str(moved / "shot-v2vz-t1-preview.mp4")], env)
    assert final.returncode == 0, final.stderr
    assert sorted(p.name for p in moved.iterdir()) == ["shot-v2vz-t1.mp4", "shot-v2vz-t1.mp4.v2vz.json"]
    assert media.probe(moved / "shot-v2vz-t1.mp4").frame_count == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review", "shot.mp4"]


def test_sequence_takes_in_one_folder_keep_their_own_record_and_audio(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path, audio=True)
    out = tmp_path / "frames"
    for name, prompt in (("shot_%04d.png", "a blue ball"), ("shot.%04d.png", "a green ball")):
        args = ["edit", str(clip), "--frames", "2", "-s", "a red ball", "-p", prompt, "--steps", "2"]
        done = run([*args, "--out", str(out / name)], env)
        assert done.returncode == 0, done.stderr
    first = takes.read_sidecar(takes.sidecar_of(out / "shot_0000.png"))
    second = takes.read_sidecar(takes.sidecar_of(out / "shot.0000.png"))
    assert (first["job"]["prompt"], second["job"]["prompt"]) == ("a blue ball", "a green ball")
    wavs = [[Path(name) for name in record["files"] if name.endswith(".wav")] for record in (first, second)]
    assert wavs == [[out / "shot_####.wav"], [out / "shot.####.wav"]] and all(w.exists() for (w,) in wavs)
    assert (out / "shot_####.png.v2vz.json").exists() and (out / "shot.####.png.v2vz.json").exists()


def test_overwriting_a_sequence_leaves_only_the_new_frames(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path, audio=True)
    pattern = tmp_path / "seq" / "shot_%04d.png"
    assert run(["edit", str(clip), "--frames", "4", *BALL, "--out", str(pattern)], env).returncode == 0
    (pattern.parent / "notes.txt").write_text("the user's")
    again = run(["edit", str(clip), "--frames", "2", *BALL, "--no-audio", "--out", str(pattern), "--overwrite"], env)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in pattern.parent.iterdir()) == [
        "notes.txt",
        "shot_####.png.v2vz.json",
        "shot_0000.png",
        "shot_0001.png",
    ]
    assert takes.read_sidecar(pattern.parent / "shot_####.png.v2vz.json")["frame_count"] == 2


def test_a_clip_named_like_a_frame_pattern_is_edited_as_a_take(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path, "100%done.mp4")
    done = run(["edit", str(clip), "--frames", "2", *BALL], env)
    assert done.returncode == 0, done.stderr
    assert media.probe(tmp_path / "100_done-v2vz-t1.mp4").frame_count == 2


def slow_edit(env: dict, clip: Path, *more: str) -> tuple[subprocess.Popen, dict]:
    """An edit of 300 steps, through the daemon, and its `submitted` line: it runs until it is cancelled."""
    args = [V2VZ, "edit", str(clip), "--frames", "2", *BALL[:-1], "300", *more, "--events", "jsonl"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    return process, json.loads(process.stdout.readline())


def ended(process: subprocess.Popen) -> None:
    process.wait(60)
    process.stdout.close()


def test_jobs_mark_previews_removed_outputs_and_takes_not_made(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path)
    submitted = preview(env, clip)
    assert run(["final", submitted["job_id"]], env).returncode == 0
    slow, cancelled = slow_edit(env, clip)
    assert run(["cancel", cancelled["job_id"]], env).returncode == 0
    ended(slow)
    later = jsonl(run(["edit", str(clip), "--frames", "2", *BALL, "--events", "jsonl"], env).stdout)[0]
    assert later["take"] == cancelled["take"] == 2  # the cancelled job's number was given back, and taken again
    text = run(["jobs", "--limit", "4"], env).stdout.replace("\n    ", " ")
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert "take 1 (preview)" in lines[submitted["job_id"]]
    assert f"{tmp_path / 'shot-v2vz-t1-preview.mp4'} (no longer there)" in lines[submitted["job_id"]]
    assert "nothing written (take 2 was not made)" in lines[cancelled["job_id"]]
    assert str(tmp_path / "shot-v2vz-t2.mp4") not in lines[cancelled["job_id"]]
    assert f"-> {tmp_path / 'shot-v2vz-t2.mp4'}" in lines[later["job_id"]]
    rows = {row["job_id"]: row for row in json.loads(run(["jobs", "--json", "--limit", "4"], env).stdout)}
    assert rows[cancelled["job_id"]]["options"]["steps"] == "300"
    assert rows[later["job_id"]]["options"]["steps"] == "2" and rows[submitted["job_id"]]["options"]["steps"] == "2"


def test_a_queued_takes_sidecar_names_the_daemons_model(served, tmp_path):
    env, _, _ = served
    clip = clip_in(tmp_path)
    running, first = slow_edit(env, clip)
    waiting, second = slow_edit(env, clip)
    try:
        record = json.loads((tmp_path / "shot-v2vz-t2.mp4.v2vz.json").read_text())
        assert (record["state"], record["output"], record["job"]["take"]) == ("reserved", second["output"], 2)
        rows = {row["job_id"]: row for row in json.loads(run(["jobs", "--json", "--limit", "2"], env).stdout)}
        assert rows[second["job_id"]]["state"] == "queued"
        assert record["job"]["model"] == rows[second["job_id"]]["model"] == "tiny"
    finally:
        for job_id in (second["job_id"], first["job_id"]):
            run(["cancel", job_id], env)
        ended(running)
        ended(waiting)


@pytest.mark.parametrize("kind", ["deep", "fifo"])
def test_a_hostile_take_record_is_one_line_not_a_crash_or_a_hang(tmp_path, kind):
    """`v2vz final` reads a sidecar a user points at: 200,000 `[` was a RecursionError traceback, a FIFO hung."""
    record = tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json"
    if kind == "deep":
        record.write_text("[" * 200_000)
    else:
        os.mkfifo(record)
    result = subprocess.run(
        [sys.executable, "-m", "v2vz.cli.main", "final", str(record)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    expected = "nests more than 512 levels deep" if kind == "deep" else "not a v2vz take record (not a regular file)"
    assert len(lines) == 1 and lines[0].startswith(f"error: {record}") and expected in lines[0], result.stderr


def test_a_previews_masks_make_way_for_its_finals(served, tmp_path):
    """A preview's masks have names of their own: its final writes its masks into the same folder, and once it is
    done the preview's go with the preview's other files."""
    env, _, _ = served
    clip = clip_in(tmp_path)
    masks = tmp_path / "masks"
    local = ["--edit-only", "ball", "--save-mask", str(masks)]
    done = run(["edit", str(clip), "--frames", "2", *BALL, "--preview", *local, "--events", "jsonl"], env)
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in masks.iterdir()) == ["mask_preview_000000.png", "mask_preview_000001.png"]
    final = run(["final", str(tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json")], env)
    assert final.returncode == 0, final.stderr
    assert sorted(path.name for path in masks.iterdir()) == ["mask_000000.png", "mask_000001.png"]
