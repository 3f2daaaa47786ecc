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

from v2vz_engine import media

from .conftest import CLIPS, serve_tiny

V2VZ = str(Path(sys.executable).with_name("v2vz"))
EDIT = ["-s", "people riding bikes on a road", "-p", "people riding horses on a road", "--steps", "3"]


def run(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([V2VZ, *args], env=env, capture_output=True, text=True, timeout=timeout)


def jsonl(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


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
        [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(model_cache)], env=env, stderr=subprocess.DEVNULL
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
