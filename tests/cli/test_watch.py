"""`v2vz watch` with the real watchdog observer against a real `v2vz serve` subprocess with the `tiny` model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from v2vz.api.endpoint import read_endpoint
from v2vz.client import Client
from v2vz_engine import media

from ..conftest import CLIPS, serve_tiny

V2VZ = str(Path(sys.executable).with_name("v2vz"))
BIKES = CLIPS / "bikes.mp4"
DEFAULTS = "frames = 3\nsteps = 3\n"
PROMPTS = 'source_prompt = "people riding bikes on a road"\nprompt = "people riding horses on a road"\n'


@pytest.fixture(scope="module")
def served(model_cache):
    """One daemon for the module (conftest.serve_tiny)."""
    with serve_tiny(model_cache, "v2vz-w-") as (env, root, process):
        yield env


@pytest.fixture
def folders(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "v2vz.toml").write_text(DEFAULTS)
    return in_dir, out_dir


class Watching:
    """`v2vz watch` as a subprocess, its stderr in a file the test reads while it runs."""

    def __init__(self, env: dict, in_dir: Path, out_dir: Path, *extra: str, settle: float = 0.4):
        self.log = in_dir.parent / f"watch-{time.monotonic_ns()}.log"
        self.handle = open(self.log, "w")  # noqa: SIM115
        args = [V2VZ, "watch", str(in_dir), "--out", str(out_dir), "--settle", str(settle), *extra]
        self.process = subprocess.Popen(args, env=env, stdout=self.handle, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self.handle.close()
        return code


@pytest.fixture
def watching(served):
    started: list[Watching] = []

    def start(in_dir: Path, out_dir: Path, *extra: str, settle: float = 0.4) -> Watching:
        started.append(Watching(served, in_dir, out_dir, *extra, settle=settle))
        return started[-1]

    yield start
    for watcher in started:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait(10)


def wait_for(condition, timeout: float = 60, what: str = "", log: Watching | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log.text() if log else ''}"
        time.sleep(0.05)


def jobs_for(env: dict, source: Path) -> list:
    with Client(read_endpoint(Path(env["V2VZ_ENDPOINT"])), timeout=5) as client:
        return [job for job in client.jobs(limit=200) if job.source == str(source.resolve())]


def assert_edited(out: Path) -> None:
    info = media.probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (3, 640, 272, Fraction(25))


def test_a_dropped_clip_and_sidecar_are_edited(served, folders, watching):
    in_dir, out_dir = folders
    watcher = watching(in_dir, out_dir)
    wait_for(lambda: "watching" in watcher.text(), what="the watcher to start", log=watcher)
    (in_dir / "ride.toml").write_text(PROMPTS)
    shutil.copy(BIKES, in_dir / "ride.mp4")
    wait_for(lambda: (in_dir / "done" / "ride.mp4").exists(), what="ride.mp4 in done/", log=watcher)
    assert_edited(out_dir / "ride.mp4")
    assert (in_dir / "done" / "ride.toml").exists() and not (in_dir / "ride.mp4").exists()
    assert sorted(p.name for p in out_dir.iterdir()) == ["ride.mp4", "ride.mp4.v2vz.json"]  # the edit and its record
    assert watcher.stop() == 0
    text = watcher.text()
    assert f"ride.mp4 -> {out_dir.resolve() / 'ride.mp4'}" in text and "ride.mp4: edit 3/3" in text, text
    assert json.loads((in_dir / ".v2vz-watch.json").read_text())["files"] == {}


def test_a_clip_written_slowly_is_taken_once_complete(served, folders, watching):
    in_dir, out_dir = folders
    (in_dir / "slow.toml").write_text(PROMPTS)
    watcher = watching(in_dir, out_dir, settle=0.6)
    wait_for(lambda: "watching" in watcher.text(), what="the watcher to start", log=watcher)
    data = BIKES.read_bytes()
    pieces = 5
    size = len(data) // pieces + 1
    for index in range(pieces):
        with open(in_dir / "slow.mp4", "ab") as handle:
            handle.write(data[index * size : (index + 1) * size])
        time.sleep(0.3)  # longer than the poll interval (0.15 s), shorter than --settle
    written = time.time()
    assert not jobs_for(served, in_dir / "slow.mp4"), watcher.text()
    wait_for(lambda: (in_dir / "done" / "slow.mp4").exists(), what="slow.mp4 in done/", log=watcher)
    assert_edited(out_dir / "slow.mp4")
    jobs = jobs_for(served, in_dir / "slow.mp4")
    assert len(jobs) == 1 and jobs[0].state == "done" and jobs[0].submitted_unix >= written - 0.35
    assert watcher.stop() == 0


def test_broken_file_and_bad_settings_go_to_failed_with_the_reason(served, folders, watching):
    in_dir, out_dir = folders
    (in_dir / "broken.toml").write_text(PROMPTS)
    (in_dir / "broken.mp4").write_bytes(b"this is not a video\n" * 500)
    (in_dir / "typo.toml").write_text(PROMPTS + "stpes = 4\n")
    shutil.copy(BIKES, in_dir / "typo.mp4")
    watcher = watching(in_dir, out_dir, "--once")
    assert watcher.process.wait(60) == 0, watcher.text()
    failed = in_dir / "failed"
    assert sorted(p.name for p in failed.iterdir()) == [
        "broken.error.txt",
        "broken.mp4",
        "broken.toml",
        "typo.error.txt",
        "typo.mp4",
        "typo.toml",
    ]
    broken = (failed / "broken.error.txt").read_text().splitlines()
    typo = (failed / "typo.error.txt").read_text().splitlines()
    assert len(broken) == 1 and "broken.mp4" in broken[0], broken
    assert len(typo) == 1 and "typo.toml" in typo[0] and "stpes" in typo[0], typo
    assert f"broken.mp4 failed: {broken[0]}" in watcher.text()
    assert not list(out_dir.iterdir()) and not jobs_for(served, in_dir / "typo.mp4")


def test_a_clip_without_prompt_waits_for_its_sidecar(served, folders, watching):
    in_dir, out_dir = folders
    watcher = watching(in_dir, out_dir, settle=0.3)
    shutil.copy(BIKES, in_dir / "later.mp4")
    wait_for(lambda: "later.mp4 waits" in watcher.text(), what="the waits line", log=watcher)
    time.sleep(1.0)
    assert (in_dir / "later.mp4").exists() and not list(out_dir.iterdir())
    lines = [line for line in watcher.text().splitlines() if "later.mp4 waits" in line]
    assert lines == ['later.mp4 waits: add prompt = "..." and source_prompt = "..." to later.toml or v2vz.toml']
    (in_dir / "later.toml").write_text(PROMPTS)
    wait_for(lambda: (in_dir / "done" / "later.mp4").exists(), what="later.mp4 in done/", log=watcher)
    assert_edited(out_dir / "later.mp4")
    assert watcher.stop() == 0


def test_a_killed_watcher_resumes_its_job_without_repeating_it(served, folders, watching):
    in_dir, out_dir = folders
    (in_dir / "kill.toml").write_text(PROMPTS + "steps = 8\n")
    shutil.copy(BIKES, in_dir / "kill.mp4")
    first = watching(in_dir, out_dir)
    state = in_dir / ".v2vz-watch.json"

    def submitted() -> bool:
        try:
            return bool(json.loads(state.read_text())["files"]["kill.mp4"]["job_id"])
        except (FileNotFoundError, KeyError, ValueError):
            return False

    wait_for(submitted, what="the job to be submitted", log=first)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    assert (in_dir / "kill.mp4").exists()
    assert [job.state for job in jobs_for(served, in_dir / "kill.mp4")] in (["queued"], ["running"])  # mid-job
    # The daemon writes OUT/kill.mp4 under a temporary name: the visible name is only ever a complete file.
    assert all(p.name.startswith(".") or p.name in ("kill.mp4", "kill.mp4.v2vz.json") for p in out_dir.iterdir())
    second = watching(in_dir, out_dir)
    wait_for(lambda: (in_dir / "done" / "kill.mp4").exists(), what="kill.mp4 in done/", log=second)
    assert second.stop() == 0
    assert "Traceback" not in second.text() and "error" not in second.text().lower(), second.text()
    assert "re-attached" in second.text(), second.text()
    assert sorted(p.name for p in out_dir.iterdir()) == ["kill.mp4", "kill.mp4.v2vz.json"]  # no temporary files left
    assert_edited(out_dir / "kill.mp4")
    jobs = jobs_for(served, in_dir / "kill.mp4")
    assert len(jobs) == 1 and jobs[0].state == "done"
    assert json.loads(state.read_text())["files"] == {}


def test_once_processes_what_is_there_in_order_and_exits(served, folders, watching):
    in_dir, out_dir = folders
    for name in ("b", "a"):
        (in_dir / f"{name}.toml").write_text(PROMPTS)
        shutil.copy(BIKES, in_dir / f"{name}.mp4")
    shutil.copy(BIKES, in_dir / "noprompt.mov")
    watcher = watching(in_dir, out_dir, "--once", settle=0.3)
    assert watcher.process.wait(60) == 0, watcher.text()
    text = watcher.text()
    assert text.index("a.mp4 -> ") < text.index("b.mp4 -> "), text
    assert "noprompt.mov waits" in text and (in_dir / "noprompt.mov").exists()
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.mp4", "a.mp4.v2vz.json", "b.mp4", "b.mp4.v2vz.json"]
    assert sorted(p.name for p in (in_dir / "done").iterdir()) == ["a.mp4", "a.toml", "b.mp4", "b.toml"]
    a, b = jobs_for(served, in_dir / "a.mp4"), jobs_for(served, in_dir / "b.mp4")
    assert len(a) == len(b) == 1 and a[0].submitted_unix <= b[0].submitted_unix
    assert a[0].finished_unix <= b[0].finished_unix


def test_no_daemon_is_one_line_and_moves_nothing(folders, tmp_path):
    in_dir, out_dir = folders
    (in_dir / "x.toml").write_text(PROMPTS)
    (in_dir / "x.mp4").write_bytes(b"x")
    env = {**os.environ, "V2VZ_ENDPOINT": str(tmp_path / "none" / "endpoint.json")}
    done = subprocess.run(
        [V2VZ, "watch", str(in_dir), "--out", str(out_dir), "--once"], env=env, capture_output=True, text=True
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "no v2vz daemon" in lines[0]
    assert sorted(p.name for p in in_dir.iterdir()) == ["v2vz.toml", "x.mp4", "x.toml"]


def test_clips_with_the_same_name_never_overwrite_each_others_edit(served, folders, watching):
    """a.mp4 and a.mov share a.toml and both get an edit (a.mp4, a-2.mp4); a clip dropped again gets a-3.mp4."""
    in_dir, out_dir = folders
    (in_dir / "a.toml").write_text(PROMPTS)
    shutil.copy(BIKES, in_dir / "a.mp4")
    shutil.copy(BIKES, in_dir / "a.mov")
    watcher = watching(in_dir, out_dir, "--once", settle=0.3)
    assert watcher.process.wait(120) == 0, watcher.text()
    edits = sorted(p.name for p in out_dir.iterdir() if p.suffix == ".mp4")
    assert edits == ["a-2.mp4", "a.mp4"], watcher.text()
    for out in out_dir.glob("*.mp4"):
        assert_edited(out)
    done = sorted(p.name for p in (in_dir / "done").iterdir())
    assert done in (["a-2.mp4", "a-2.toml", "a.mov", "a.toml"], ["a-2.mov", "a-2.toml", "a.mp4", "a.toml"]), done
    assert not (in_dir / "a.toml").exists()  # the sidecar went with the last of its clips
    first = (out_dir / "a.mp4").stat().st_mtime_ns
    (in_dir / "a.toml").write_text(PROMPTS)
    shutil.copy(BIKES, in_dir / "a.mp4")
    again = watching(in_dir, out_dir, "--once", settle=0.3)
    assert again.process.wait(120) == 0, again.text()
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [f"{stem}{suffix}" for stem in ("a", "a-2", "a-3") for suffix in (".mp4", ".mp4.v2vz.json")]
    )
    assert (out_dir / "a.mp4").stat().st_mtime_ns == first  # the earlier edit is untouched
    assert f"a.mp4 -> {out_dir.resolve() / 'a-3.mp4'}" in again.text()


def test_a_matte_dropped_beside_its_clip_bounds_the_edit_and_is_never_edited_itself(served, folders, watching):
    """A local edit through the real daemon: the matte is read, not edited, its masks land in OUT_DIR/masks/NAME."""
    in_dir, out_dir = folders
    (in_dir / "v2vz.toml").write_text(DEFAULTS + PROMPTS)  # every video has prompts: a matte edited would show
    (in_dir / "ride.toml").write_text('matte = "left.mp4"\nsave_mask = "masks"\nedit_only = "bikes"\n')
    shutil.copy(BIKES, in_dir / "ride.mp4")
    shutil.copy(BIKES, in_dir / "left.mp4")  # any video of the clip's shape serves as a matte
    watcher = watching(in_dir, out_dir, "--once")
    assert watcher.process.wait(120) == 0, watcher.text()
    assert_edited(out_dir / "ride.mp4")
    assert sorted(p.name for p in (out_dir / "masks" / "ride").iterdir()) == [f"mask_{i:06d}.png" for i in range(3)]
    assert sorted(p.name for p in (in_dir / "done").iterdir()) == ["left.mp4", "ride.mp4", "ride.toml"]
    (job,) = jobs_for(served, in_dir / "ride.mp4")
    assert (job.matte, job.mask_dir) == (str(in_dir / "left.mp4"), str(out_dir / "masks" / "ride"))
    assert len(job.matte_digest) == 64 and not jobs_for(served, in_dir / "left.mp4")
