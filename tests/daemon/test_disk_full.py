"""A full disk, for real: the daemon's state folder or an output folder on a small tmpfs that the test fills up.

The worker survives, health says NOT_SERVING while jobs cannot be recorded, submits are refused with
RESOURCE_EXHAUSTED and one line, and the job that was running ends `failed` with its reason as soon as the journal can
be written again. An output disk that fills up fails the job with one line, not INTERNAL and no traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from v2vz.api.v1 import editor_pb2 as pb

from ..daemon_kit import connect, make_daemon, request, watch


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (the tests run as root, as CI does)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the disk-full tests: {done.stderr.decode().strip()}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has no byte left; returns it (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)
    return filler


def health(daemon) -> int:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(daemon.address))
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_journal_disk_that_fills_up_fails_the_job_once_it_can_be_recorded(root, pipeline, caplog):
    with small_filesystem(root / "state", "4m") as state:
        server = make_daemon(state, lambda: pipeline, endpoint_file=root / "run" / "endpoint.json")
        server.start()
        try:
            assert server.wait_ready(30)
            stub, md = connect(server)
            serving = health_pb2.HealthCheckResponse.SERVING
            assert health(server) == serving
            long_job = request(root / "a", options={"steps": "40", "inversion": "null-text", "null_inner_steps": "3"})
            job_id = stub.SubmitEdit(long_job, metadata=md).job_id
            events = iter(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120))
            while next(events).WhichOneof("kind") != "progress":  # the job is running
                pass
            filler = fill(state)
            wait_for(lambda: health(server) != serving, what="NOT_SERVING on a full journal disk")
            assert server.journal.writable is False
            with pytest.raises(grpc.RpcError) as refused:
                stub.SubmitEdit(request(root / "b"), metadata=md)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "cannot record jobs" in refused.value.details() and "\n" not in refused.value.details()
            time.sleep(1.5)  # the worker keeps trying: it must be alive, and the job not yet recorded as ended
            assert any(t.name == "v2vz-job-loop" and t.is_alive() for t in server.threads)
            filler.unlink()
            wait_for(lambda: health(server) == serving, what="SERVING once the disk has room")
            (summary,) = stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs
            wait_for(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs[0].state == "failed", what="failed")
            (summary,) = stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs
            assert "cannot record jobs" in summary.reason
            last = watch(stub, md, job_id)[-1]
            assert last.WhichOneof("kind") == "failed" and last.failed.code == "RESOURCE_EXHAUSTED"
            # The daemon serves the next job as usual.
            again = stub.SubmitEdit(request(root / "c"), metadata=md).job_id
            assert watch(stub, md, again)[-1].WhichOneof("kind") == "done"
        finally:
            server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info], "no traceback in the log"


def test_an_output_disk_that_fills_up_fails_the_job_in_one_line(root, daemon, caplog):
    stub, md = connect(daemon)
    with small_filesystem(root / "out", "2m") as out:
        job = request(out, start=0, frames=3, options={"steps": "2", "window": "1"}, output="")
        job_id = stub.SubmitEdit(job, metadata=md).job_id
        events = iter(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120))
        filled = threading.Event()
        for event in events:
            if event.WhichOneof("kind") == "frame" and not filled.is_set():
                fill(out)  # the first frame is written: the rest have no room
                filled.set()
            last = event
        assert filled.is_set() and last.WhichOneof("kind") == "failed", last
        assert last.failed.code == "RESOURCE_EXHAUSTED"
        assert last.failed.reason.startswith("the disk is full: cannot write ") and "\n" not in last.failed.reason
        assert not [name for name in os.listdir(out / "frames") if ".part." in name]  # no half-written frame left
    assert not [r for r in caplog.records if r.exc_info], "a full output disk is the user's, not a bug: no traceback"


def test_an_output_folder_that_cannot_be_written_is_refused_at_submit(root, daemon):
    stub, md = connect(daemon)
    cases = {
        "/proc/a.mp4": ("output", "cannot write /proc/a.mp4"),
        str(root / "folder.mp4"): ("output", "is a folder"),
        str(root / "file.txt"): ("out_frames_dir", "is a file"),
    }
    (root / "file.txt").write_text("x")
    (root / "folder.mp4").mkdir()
    with small_filesystem(root / "ro", "1m") as read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(read_only)], check=True)
        cases[str(read_only / "x.mp4")] = ("output", "Read-only file system")
        for path, (field, words) in cases.items():
            changes = {"output": "", "out_frames_dir": ""} | {field: path}
            with pytest.raises(grpc.RpcError) as refused:
                stub.SubmitEdit(request(root, **changes), metadata=md)
            assert refused.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
            assert words in refused.value.details() and "\n" not in refused.value.details(), refused.value.details()
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == []
