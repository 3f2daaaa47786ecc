"""The daemon's life cycle (issue 23): one daemon per state folder, followers that outlive brief restarts, each frame
announced once after a restart, and a daemon log whose every line is one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest

from v2vz.api.errors import InvalidArgument
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.client import Client

from ..conftest import V2VZ, serve_tiny
from ..daemon_kit import BIKES, connect, make_daemon, request, watch


def run(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([V2VZ, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# Item 2: one daemon per state folder, held by an OS lock


def test_a_second_daemon_on_the_state_folder_is_refused_and_touches_nothing(root, pipeline):
    hold = threading.Event()
    first = make_daemon(root, lambda: (hold.wait(60), pipeline)[1])
    first.start()
    second = None
    try:
        stub, md = connect(first)
        out = root / "out"
        job_id = stub.SubmitEdit(request(out, options={"steps": "2"}), metadata=md).job_id
        assert first.journal.claim_next().job_id == job_id  # the first daemon runs it
        out.mkdir()
        partial = out / ".out.mp4.k3j2h1.part.mp4"  # what the running job is writing
        partial.write_bytes(b"partial")
        # Another endpoint (another socket), the same state folder: only the folder's lock can tell.
        second = make_daemon(root, lambda: pipeline, endpoint_file=root / "run2" / "endpoint.json")
        with pytest.raises(InvalidArgument) as refused:
            second.start()
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and first.address in message and "--state-dir" in message
        assert "\n" not in message
        assert partial.read_bytes() == b"partial"  # not swept as "left by an interrupted job"
        assert first.journal.get(job_id).state == "running" and first.journal.get(job_id).attempts == 1
        assert not (root / "run2" / "endpoint.json").exists()
        assert second.server is None  # it never served
    finally:
        hold.set()
        first.stop()
        if second is not None and second.server is not None:  # started after all: it must not run on
            second.stop()
    third = make_daemon(root, lambda: pipeline)  # the folder is free again once the first one stopped
    third.start()
    try:
        assert third.wait_ready(30)
    finally:
        third.stop()


def test_a_lock_file_left_by_a_dead_daemon_never_blocks(root, pipeline):
    """The lock is the OS's, not the file's content: a record naming a live pid (ours) is not a refusal."""
    state = root / "cache" / "daemon"
    state.mkdir(parents=True, mode=0o700)
    (state / "daemon.lock").write_text(json.dumps({"pid": os.getpid(), "address": "unix:/nowhere.sock"}))
    daemon = make_daemon(root, lambda: pipeline)
    daemon.start()
    try:
        assert daemon.wait_ready(30)
        assert json.loads((state / "daemon.lock").read_text()) == {"pid": os.getpid(), "address": daemon.address}
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def served(model_cache):
    with serve_tiny(model_cache, "v2vz-r3d-") as (env, root, process):
        yield env, root, process


def test_serve_refuses_a_second_daemon_on_its_state_folder_before_loading_anything(served, tmp_path):
    env, root, process = served
    other = {"V2VZ_ENDPOINT": str(tmp_path / "run" / "endpoint.json")}  # another endpoint: the lock decides
    # A model that is nowhere: the folder's refusal comes before the model is even looked for.
    began = time.monotonic()
    second = run(["serve", "--model", str(tmp_path / "no-model"), "--state-dir", str(root / "state")], other)
    seconds = time.monotonic() - began
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), second.stderr
    assert f"pid {process.pid}" in lines[0] and "unix:" in lines[0] and str(root / "state") in lines[0]
    assert "no-model" not in lines[0]
    assert not (tmp_path / "run").exists()  # no endpoint, no socket
    assert seconds < 10, seconds  # no torch, no model: the command's start-up only
    # The same endpoint, another state folder: refused as fast, by the live daemon's endpoint file.
    again = run(["serve", "--model", "tiny", "--state-dir", str(tmp_path / "state")], env)
    assert again.returncode == 2 and "already running" in again.stderr and f"pid {process.pid}" in again.stderr
    assert "Traceback" not in again.stderr
    assert process.poll() is None  # the first daemon serves on


def test_a_killed_daemon_leaves_its_state_folder_free(model_cache):
    root = Path(tempfile.mkdtemp(prefix="v2vz-r3k-", dir="/tmp"))
    env = {"V2VZ_ENDPOINT": str(root / "run" / "endpoint.json")}
    args = ["serve", "--model", "tiny", "--cache-dir", str(model_cache), "--device", "cpu"]
    args += ["--state-dir", str(root / "state")]
    first = subprocess.Popen([V2VZ, *args], env={**os.environ, **env}, stderr=subprocess.DEVNULL)
    second = None
    try:
        deadline = time.monotonic() + 60
        while not Path(env["V2VZ_ENDPOINT"]).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Path(env["V2VZ_ENDPOINT"]).exists()
        first.send_signal(signal.SIGKILL)  # no clean-up at all: the endpoint file and the lock file stay
        first.wait(30)
        second = subprocess.Popen([V2VZ, *args], env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and second.poll() is None:
            lock = json.loads((root / "state" / "daemon.lock").read_text() or "{}")
            if lock.get("pid") == second.pid and lock.get("address"):
                break
            time.sleep(0.1)
        assert second.poll() is None, second.stderr.read()
        assert json.loads((root / "state" / "daemon.lock").read_text())["pid"] == second.pid
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Item 10: followers and restarts


def test_a_follower_of_a_queued_job_outlives_restarts_further_apart_than_its_deadline(root, pipeline, monkeypatch):
    never = threading.Event()
    monkeypatch.setenv("V2VZ_ENDPOINT", str(root / "run" / "endpoint.json"))
    daemon = make_daemon(root, lambda: (never.wait(60), pipeline)[1])  # never ready: the job stays queued
    daemon.start()
    stub, md = connect(daemon)
    job_id = stub.SubmitEdit(request(root / "out", options={"steps": "2"}), metadata=md).job_id
    kinds: list[str] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            with Client(reconnect_for=2.0) as client:
                kinds.extend(event.WhichOneof("kind") for event in client.follow(job_id))
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            errors.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        deadline = time.monotonic() + 10
        while not kinds and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kinds == ["queued"]
        for _ in range(2):  # two brief restarts, 3.5 s apart: more than the follower's 2 s, and no event between
            daemon.stop(grace=0.2)
            daemon = make_daemon(root, lambda: (never.wait(60), pipeline)[1])
            daemon.start()
            time.sleep(3.5)
            assert follower.is_alive() and not errors, errors
        daemon.stop(grace=0.2)
        daemon = make_daemon(root, lambda: pipeline)
        daemon.start()
        follower.join(120)
        assert not errors, errors
        assert kinds[0] == "queued" and kinds[-1] == "done", kinds
    finally:
        never.set()
        daemon.stop()
        follower.join(10)


def test_a_job_run_again_after_a_restart_announces_each_frame_once(root, pipeline):
    first = make_daemon(root, lambda: pipeline)
    first.start()
    assert first.wait_ready(30)
    stub, md = connect(first)
    options = {"steps": "3", "window": "1"}  # a window per frame: frame 0 is written while frames 1, 2 wait
    job_id = stub.SubmitEdit(request(root / "out", options=options), metadata=md).job_id
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120):
        if event.WhichOneof("kind") == "frame":
            break
    first.stop(grace=0.2)  # interrupted after its first frame: re-queued, it runs again from its start
    assert first.journal.get(job_id).state == "running", first.journal.get(job_id).reason
    second = make_daemon(root, lambda: pipeline)
    second.start()
    try:
        stub, md = connect(second)
        events = watch(stub, md, job_id)
        assert events[-1].WhichOneof("kind") == "done"
        announced = [e.frame.index for e in events if e.WhichOneof("kind") == "frame"]
        assert announced == [0, 1, 2], announced
        assert [e.queued.requeued for e in events if e.WhichOneof("kind") == "queued"] == [False, True]
        done = events[-1].done
        assert len(done.frame_paths) == 3 and all(Path(path).is_file() for path in done.frame_paths)
        assert second.journal.get(job_id).attempts == 2
    finally:
        second.stop()


# ---------------------------------------------------------------------------------------------------------------
# Item 12 (the daemon's part): one log line per record


def test_control_characters_in_what_the_daemon_logs_never_split_or_forge_a_line(root, daemon):
    folder = root / "shots\n2026-01-01 00:00:00,000 INFO job forged done"
    folder.mkdir()
    clip = folder / "clip\x1b[2J.mp4"
    shutil.copyfile(BIKES, clip)
    stub, md = connect(daemon)
    submit = request(root / "out", source_path=str(clip), prompt="horses\r\non a road \u202e", client="cli\tent")
    job_id = stub.SubmitEdit(submit, metadata=md).job_id
    assert watch(stub, md, job_id)[-1].WhichOneof("kind") == "done"
    text = daemon.log_file.read_text()
    lines = text.splitlines()
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) ")
    assert all(stamp.match(line) for line in lines), lines
    assert not any(line.startswith("2026-01-01") for line in lines)  # nothing forged
    submitted = next(line for line in lines if f"job {job_id} submitted" in line)
    assert "shots\\n2026-01-01" in submitted and "clip\\x1b[2J.mp4" in submitted
    assert "horses\\r\\non a road \\u202e" in submitted and "cli\\tent" in submitted
    assert "\x1b" not in text and "\u202e" not in text and "\r" not in text


def test_the_daemon_stderr_log_is_one_line_per_record_too(served, tmp_path):
    env, root, process = served
    folder = tmp_path / "a\nb"
    folder.mkdir()
    clip = folder / "clip.mp4"
    shutil.copyfile(BIKES, clip)
    done = run(["edit", str(clip), "-s", "bikes", "-p", "horses", "--frames", "2", "--steps", "2"], env, 120)
    assert done.returncode == 0, done.stderr
    log = (root / "serve.log").read_text()
    assert "a\\nb/clip.mp4" in log and "a\nb/clip.mp4" not in log


def test_watch_job_says_it_attached_before_any_event(root, daemon):
    """A follower knows that a re-attach worked even when the job has nothing new to say."""
    stub, md = connect(daemon)
    job_id = stub.SubmitEdit(request(root / "out", options={"steps": "2"}), metadata=md).job_id
    events = watch(stub, md, job_id)
    last = events[-1].sequence
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=last), metadata=md, timeout=30)
    assert ("v2vz-watching", job_id) in tuple(call.initial_metadata())
    assert [event.WhichOneof("kind") for event in call] == ["done"]
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.WatchJob(pb.WatchJobRequest(job_id="ffffffffffff"), metadata=md, timeout=30))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
