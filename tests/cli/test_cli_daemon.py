"""The installed `v2vz` command against a real `v2vz serve` subprocess with the `tiny` model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import pytest

from v2vz.cli.sample import make_sample_clip
from v2vz_engine import media

from ..cli_kit import jsonl
from ..cli_kit import run_in as run
from ..conftest import CLIPS, serve_tiny

V2VZ = str(Path(sys.executable).with_name("v2vz"))
EDIT = ["-s", "people riding bikes on a road", "-p", "people riding horses on a road", "--steps", "3"]


@pytest.fixture(scope="module")
def served(model_cache):
    """One daemon for the module (conftest.serve_tiny)."""
    with serve_tiny(model_cache, "v2vz-cli-") as (env, root, process):
        yield env, root, process


def test_edit_goes_through_the_daemon_by_default(served, tmp_path):
    env, _, _ = served
    out = tmp_path / "out.mp4"
    done = run(["edit", str(CLIPS / "bikes.mp4"), "--start", "50", "--frames", "4", *EDIT, "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and str(out) in done.stderr
    info = media.probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (4, 640, 272, Fraction(25))
    rows = json.loads(run(["jobs", "--json"], env).stdout)
    source = str((CLIPS / "bikes.mp4").resolve())  # the client sends absolute, resolved paths
    assert any(row["state"] == "done" and row["source"] == source for row in rows)


def test_events_jsonl_then_attach_replays_them(served, tmp_path):
    env, _, _ = served
    args = ["edit", str(CLIPS / "bikes.mp4"), "--frames", "3", *EDIT, "--out", str(tmp_path / "frames")]
    done = run([*args, "--events", "jsonl"], env)
    assert done.returncode == 0, done.stderr
    events = jsonl(done.stdout)
    assert events[0]["type"] == "submitted"
    job_id = events[0]["job_id"]
    daemon_events = events[1:]
    assert [e["sequence"] for e in daemon_events] == list(range(1, len(daemon_events) + 1))
    assert daemon_events[-1]["type"] == "done"
    frames = [e for e in daemon_events if e["type"] == "frame"]
    assert [e["index"] for e in frames] == [0, 1, 2] and all(Path(e["path"]).exists() for e in frames)
    replay = run(["attach", job_id, "--events", "jsonl", "--after", "2"], env)
    assert replay.returncode == 0
    assert [e["sequence"] for e in jsonl(replay.stdout)] == [e["sequence"] for e in daemon_events[2:]]


def test_cancel_a_running_edit_from_another_command(served, tmp_path):
    env, _, _ = served
    args = ["edit", str(CLIPS / "bikes.mp4"), "--frames", "3", *EDIT[:-1], "200", "--out", str(tmp_path / "o.mp4")]
    edit = subprocess.Popen([V2VZ, *args, "--events", "jsonl"], env=env, stdout=subprocess.PIPE, text=True)
    job_id = None
    for line in edit.stdout:
        event = json.loads(line)
        job_id = job_id or event["job_id"]
        if event.get("type") == "progress" and event["stage"] == "inversion":
            break
    cancelled = run(["cancel", job_id], env)
    assert cancelled.returncode == 0 and job_id in cancelled.stdout  # "JOB: running" until the step ends
    rest = [json.loads(line) for line in edit.stdout]
    assert edit.wait(60) == 1
    assert rest[-1]["type"] == "cancelled"
    assert not (tmp_path / "o.mp4").exists()


def test_bad_input_through_the_daemon_is_one_line(served, tmp_path):
    env, _, _ = served
    past = run(["edit", str(CLIPS / "bikes.mp4"), "--start", "248", "--frames", "8", *EDIT, "--out", "x.mp4"], env)
    missing = run(["edit", str(tmp_path / "gone.mp4"), *EDIT, "--out", "x.mp4"], env)
    unknown = run(["attach", "nosuchjob"], env)
    for result, words in ((past, "outside"), (missing, "gone.mp4"), (unknown, "nosuchjob")):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert words in lines[0] and "Traceback" not in result.stderr


def test_serve_refuses_a_second_daemon_and_a_bad_model(served, tmp_path):
    env, _, _ = served
    second = run(["serve", "--model", "tiny", "--cache-dir", str(tmp_path / "c")], env, timeout=60)
    assert second.returncode == 2 and "already running" in second.stderr
    other = {**env, "V2VZ_ENDPOINT": str(tmp_path / "endpoint.json")}
    bad = run(["serve", "--model", str(tmp_path / "no-model"), "--cache-dir", str(tmp_path)], other, timeout=60)
    assert bad.returncode == 2 and "no-model" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "endpoint.json").exists()  # a daemon that never served leaves no endpoint behind


def test_sigterm_removes_the_endpoint_file(model_cache, tmp_path):
    root = Path(tempfile.mkdtemp(prefix="v2vz-t-", dir="/tmp"))
    env = {**os.environ, "V2VZ_ENDPOINT": str(root / "endpoint.json")}
    process = subprocess.Popen(
        [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(model_cache), "--state-dir", str(root / "state")],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not Path(env["V2VZ_ENDPOINT"]).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Path(env["V2VZ_ENDPOINT"]).exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not Path(env["V2VZ_ENDPOINT"]).exists()
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Takes and previews (issue 15)


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def clip_copy(folder: Path, frames: int = 12) -> Path:
    """A short clip of its own in `folder`, so that its takes land beside it."""
    clip = make_sample_clip(folder / "shot.mp4", frames=frames, width=96, height=64)
    return clip


def test_re_prompts_become_new_takes_beside_the_source_and_never_overwrite(served, tmp_path):
    env, _, _ = served
    clip = clip_copy(tmp_path)
    outputs, first_hash = [], None
    for number, prompt in enumerate(("a blue ball", "a green ball", "a white ball"), start=1):
        done = run(["edit", str(clip), "--frames", "4", "-s", "a red ball", "-p", prompt, "--steps", "2"], env)
        assert done.returncode == 0, done.stderr
        out = tmp_path / f"shot-v2vz-t{number}.mp4"
        assert f"take {number}" in done.stderr and str(out) in done.stderr
        outputs.append(out)
        first_hash = first_hash or sha256(outputs[0])
        record = json.loads((tmp_path / f"shot-v2vz-t{number}.mp4.v2vz.json").read_text())
        assert (record["state"], record["take"], record["preview"]) == ("done", number, False)
        assert record["job"]["prompt"] == prompt and record["job"]["options"]["steps"] == 2
    assert sha256(outputs[0]) == first_hash  # takes 2 and 3 left take 1 byte for byte as it was
    assert [media.probe(out).frame_count for out in outputs] == [4, 4, 4]
    import av

    with av.open(str(outputs[1])) as container:  # the record travels in the file too
        assert json.loads(container.metadata["v2vz"])["job"]["prompt"] == "a green ball"
    rows = json.loads(run(["jobs", "--json", "--limit", "3"], env).stdout)
    assert [row["take"] for row in rows] == [3, 2, 1] and rows[0]["output"] == str(outputs[2])


def test_an_output_that_exists_is_refused_unless_overwrite(served, tmp_path):
    env, _, _ = served
    clip = clip_copy(tmp_path)
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"an editor's own file")
    args = [
        "edit",
        str(clip),
        "--frames",
        "2",
        "-s",
        "a red ball",
        "-p",
        "a blue ball",
        "--steps",
        "2",
        "--out",
        str(out),
    ]
    refused = run([*args, "--events", "jsonl"], env)
    assert refused.returncode == 2
    (line,) = jsonl(refused.stdout)
    assert line["type"] == "error" and line["error"] == "OutputExists" and str(out) in line["message"]
    assert out.read_bytes() == b"an editor's own file"
    frames = tmp_path / "frames"
    assert run([*args[:-1], str(frames)], env).returncode == 0
    again = run([*args[:-1], str(frames)], env)
    assert again.returncode == 2 and "frame_000000.png exists" in again.stderr
    replaced = run([*args, "--overwrite"], env)
    assert replaced.returncode == 0, replaced.stderr
    assert media.probe(out).frame_count == 2
    assert sorted(p.name for p in tmp_path.iterdir() if "v2vz-t" in p.name) == []  # explicit outputs take no number


def test_a_preview_then_its_final_as_the_same_take(served, tmp_path):
    env, _, _ = served
    clip = clip_copy(tmp_path)
    preview = run(
        [
            "edit",
            str(clip),
            "--frames",
            "4",
            "-s",
            "a red ball",
            "-p",
            "a blue ball",
            "--steps",
            "12",
            "--preview",
            "--events",
            "jsonl",
        ],
        env,
    )
    assert preview.returncode == 0, preview.stderr
    submitted, *_, done = jsonl(preview.stdout)
    assert (submitted["take"], submitted["preview"], done["preview"], done["take"]) == (1, True, True, 1)
    preview_file = tmp_path / "shot-v2vz-t1-preview.mp4"
    assert done["output"] == str(preview_file) and media.probe(preview_file).frame_count == 4
    steps = [e["total"] for e in jsonl(preview.stdout) if e.get("stage") == "edit"]
    assert set(steps) == {10}  # the preview pass: 10 of the 12 steps asked for
    other = run(["edit", str(clip), "--frames", "2", "-s", "a red ball", "-p", "a cat", "--steps", "2"], env)
    assert other.returncode == 0 and (tmp_path / "shot-v2vz-t2.mp4").exists()  # the preview holds number 1
    final = run(["final", submitted["job_id"][:6], "--events", "jsonl"], env)
    assert final.returncode == 0, final.stderr
    final_submitted, *_, final_done = jsonl(final.stdout)
    assert (final_submitted["take"], final_done["preview"]) == (1, False)
    assert final_done["output"] == str(tmp_path / "shot-v2vz-t1.mp4")
    assert set(e["total"] for e in jsonl(final.stdout) if e.get("stage") == "edit") == {12}
    assert not preview_file.exists() and not (tmp_path / "shot-v2vz-t1-preview.mp4.v2vz.json").exists()
    record = json.loads((tmp_path / "shot-v2vz-t1.mp4.v2vz.json").read_text())
    assert (record["take"], record["preview"], record["job"]["prompt"]) == (1, False, "a blue ball")
    again = run(["final", submitted["job_id"]], env)
    assert again.returncode == 2 and "does not exist" in again.stderr  # the preview is gone: nothing to finalize


def test_previews_run_ahead_of_queued_finals(served, tmp_path):
    env, _, _ = served
    from v2vz.api.endpoint import read_endpoint
    from v2vz.api.job import EditJob, EditOptions
    from v2vz.client import Client

    clip = clip_copy(tmp_path)

    def job(name: str, steps: int, preview: bool = False) -> EditJob:
        return EditJob(
            clip,
            "a blue ball",
            "a red ball",
            frames=4,
            options=EditOptions(steps=steps),
            output=tmp_path / f"{name}.mp4",
            preview=preview,
        )

    with Client(read_endpoint(Path(env["V2VZ_ENDPOINT"]))) as client:
        first = client.submit(job("first", 12)).job_id
        deadline = time.monotonic() + 60
        while next(j for j in client.jobs(5) if j.job_id == first).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = client.submit(job("second", 2))
        preview = client.submit(job("preview", 4, preview=True))
        assert (second.queue_position, preview.queue_position) == (0, 0)  # the preview runs next, ahead of second
        for job_id in (first, second.job_id, preview.job_id):
            *_, last = client.follow(job_id)
            assert last.WhichOneof("kind") == "done"
        rows = {row.job_id: row for row in client.jobs(10)}
    assert rows[preview.job_id].started_unix < rows[second.job_id].started_unix
    assert rows[preview.job_id].started_unix > rows[first].started_unix


def test_an_edit_delivers_prores_with_the_ranges_audio_timecode_and_colour(served, tmp_path):
    """Through the daemon and the engine: a 29.97 drop-frame clip with two audio streams, frames 6..9 of it."""
    import av

    from ..media_kit import AudioSpec, make_clip

    env, _, _ = served
    fps = Fraction(30000, 1001)
    clip = make_clip(
        tmp_path / "shot.mov",
        size=(96, 64),
        fps=fps,
        frames=12,
        audio=(AudioSpec(), AudioSpec(rate=44100, channels=1)),
        timecode="00:59:59;28",
        colour="bt709-full",
    )
    args = ["edit", str(clip), "--start", "6", "--frames", "4", "-s", "a red card", "-p", "a blue card", "--steps", "2"]
    done = run([*args, "--format", "mov"], env)
    assert done.returncode == 0, done.stderr
    take = tmp_path / "shot-v2vz-t1.mov"
    with av.open(str(take)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.format.name) == ("prores", "yuv422p10le")
        assert (video.frames, video.average_rate, video.width, video.height) == (4, fps, 96, 64)
        assert video.metadata["timecode"] == "01:00:00;04"  # 00:59:59;28 + 6 frames, drop-frame kept
        assert [(a.codec_context.name, a.rate) for a in container.streams.audio] == [
            ("pcm_s16le", 48000),
            ("pcm_s16le", 44100),
        ]
        for stream in container.streams.audio:
            seconds = float(stream.duration * stream.time_base)
            assert abs(seconds - 4 / float(fps)) < 1 / stream.rate * 1024  # within one audio frame
        assert (video.codec_context.color_primaries, video.codec_context.color_trc) == (1, 1)  # BT.709 kept
        assert video.codec_context.colorspace == 1
    frames = run([*args, "--format", "exr", "--no-audio"], env)
    assert frames.returncode == 0, frames.stderr
    folder = tmp_path / "shot-v2vz-t2"
    assert sorted(p.name for p in folder.iterdir()) == [
        "shot-v2vz-t2.####.exr.v2vz.json",
        *(f"shot-v2vz-t2.{n:04d}.exr" for n in range(6, 10)),  # numbered by source frame
    ]
    with av.open(str(folder / "shot-v2vz-t2.0006.exr")) as image:
        assert image.streams.video[0].format.name.startswith("gbrpf")  # half float, read as float planes
