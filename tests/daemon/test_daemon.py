"""The gRPC daemon with a real server on a temporary Unix socket and the `tiny` model."""

from __future__ import annotations

import json
import re
import stat
import threading
from fractions import Fraction
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from v2vz.api.errors import InvalidArgument
from v2vz.api.events import DAEMON_EVENT_TYPES, JobState, Stage
from v2vz.api.v1 import editor_pb2 as pb
from v2vz_engine import media

from ..daemon_kit import BIKES, connect, make_daemon, request, watch
from ..media_kit import write_mp4


def test_submit_watch_and_frames_on_disk(daemon, root):
    stub, md = connect(daemon)
    reply = stub.SubmitEdit(request(root), metadata=md)
    assert reply.job_id and reply.queue_position == 0  # nothing queued ahead of it
    announced = []
    events = []
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=reply.job_id), metadata=md, timeout=120):
        events.append(event)
        if event.WhichOneof("kind") == "frame":
            announced.append((event.frame.index, Path(event.frame.path).exists()))
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    stages = [e.progress.stage for e in events if e.WhichOneof("kind") == "progress"]
    for stage in ("inversion", "null-text", "edit"):
        assert stages.count(stage) == 3, stages
    assert announced == [(0, True), (1, True), (2, True)]  # each frame final when announced
    done = events[-1].done
    info = media.probe(done.output)
    assert (info.frame_count, info.width, info.height, info.fps) == (3, 640, 272, Fraction(25))
    assert len(done.frame_paths) == 3 and not done.inversion_cached
    assert {"inversion", "null-text", "edit"} <= set(done.timings)
    jobs = stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs
    assert [(j.job_id, j.state) for j in jobs] == [(reply.job_id, "done")]


def test_two_clients_and_reattach_after_disconnect(daemon, root):
    stub_a, md = connect(daemon)
    stub_b, _ = connect(daemon)
    first = stub_a.SubmitEdit(request(root / "a"), metadata=md).job_id
    reply = stub_b.SubmitEdit(request(root / "b", prompt="people riding camels on a road"), metadata=md)
    second = reply.job_id
    assert reply.queue_position <= 1  # behind the first unless the worker has already taken it
    partial = watch(stub_b, md, second, limit=2)  # disconnects early
    whole_a = watch(stub_a, md, first)
    rest = watch(stub_b, md, second, after=partial[-1].sequence)
    sequences = [e.sequence for e in partial + rest]
    assert sequences == list(range(1, len(sequences) + 1))  # no gap, no repeat
    assert whole_a[-1].WhichOneof("kind") == rest[-1].WhichOneof("kind") == "done"
    # Watching a finished job again replays its whole history; attaching past its end says how it ended.
    assert [e.sequence for e in watch(stub_a, md, first)] == [e.sequence for e in whole_a]
    past = watch(stub_a, md, first, after=whole_a[-1].sequence + 5)
    assert [(e.sequence, e.WhichOneof("kind")) for e in past] == [(whole_a[-1].sequence, "done")]
    # Jobs ran in submission order.
    assert whole_a[-1].time_unix <= rest[-1].time_unix


def test_cancel_mid_job_then_the_next_job_runs(daemon, root):
    stub, md = connect(daemon)
    slow_job = request(root / "slow", options={"steps": "40", "inversion": "null-text"})
    slow = stub.SubmitEdit(slow_job, metadata=md).job_id
    after = stub.SubmitEdit(request(root / "next"), metadata=md).job_id
    seen = []
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=slow), metadata=md, timeout=120):
        seen.append(event)
        if event.WhichOneof("kind") == "progress" and (event.progress.stage, event.progress.step) == ("null-text", 2):
            assert stub.CancelJob(pb.CancelJobRequest(job_id=slow), metadata=md).state == "running"
    assert seen[-1].WhichOneof("kind") == "cancelled"
    after_cancel = [e for e in seen if e.WhichOneof("kind") == "progress" and e.progress.stage == "null-text"]
    assert after_cancel[-1].progress.step <= 3  # stopped within one diffusion step
    assert not (root / "slow" / "out.mp4").exists()
    assert watch(stub, md, after)[-1].WhichOneof("kind") == "done"
    states = {j.job_id: j.state for j in stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs}
    assert states == {slow: "cancelled", after: "done"}


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"prompt": "  "}, grpc.StatusCode.INVALID_ARGUMENT, "prompt is empty"),
        ({"start": 248, "frames": 8}, grpc.StatusCode.INVALID_ARGUMENT, "outside"),
        ({"start": 250, "frames": 0}, grpc.StatusCode.INVALID_ARGUMENT, "start frame 250 is past the end"),
        ({"options": {"stepz": "3"}}, grpc.StatusCode.INVALID_ARGUMENT, "unknown option 'stepz'"),
        ({"options": {"steps": "many"}}, grpc.StatusCode.INVALID_ARGUMENT, "steps must be int"),
        ({"options": {"attention": "diagonal"}}, grpc.StatusCode.INVALID_ARGUMENT, "attention"),
        ({"source_path": "/nonexistent/clip.mp4"}, grpc.StatusCode.NOT_FOUND, "clip.mp4"),
        ({"source_path": "relative/clip.mp4"}, grpc.StatusCode.INVALID_ARGUMENT, "absolute"),
        ({"output": "out.mp4"}, grpc.StatusCode.INVALID_ARGUMENT, "absolute"),
        ({"media_id": "deadbeef.mp4"}, grpc.StatusCode.NOT_FOUND, "UploadMedia"),
    ],
)
def test_bad_requests_get_the_right_status(daemon, root, changes, code, words):
    stub, md = connect(daemon)
    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitEdit(request(root, **changes), metadata=md)
    assert raised.value.code() == code
    assert words in raised.value.details() and "\n" not in raised.value.details()
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == []


def test_frames_0_edits_through_the_end_of_the_clip(daemon, root):
    stub, md = connect(daemon)
    reply = stub.SubmitEdit(request(root, start=247, frames=0), metadata=md)  # bikes.mp4 has 250 frames
    (listed,) = stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs
    assert (listed.start, listed.frames) == (247, 3)  # resolved when submitted: the journal has the real count
    done = watch(stub, md, reply.job_id)[-1].done
    assert media.probe(done.output).frame_count == 3 and len(done.frame_paths) == 3


def test_undecodable_media_and_unknown_jobs(daemon, root):
    stub, md = connect(daemon)
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitEdit(request(root, source_path=str(broken)), metadata=md)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for call in (
        lambda: list(stub.WatchJob(pb.WatchJobRequest(job_id="nope"), metadata=md)),
        lambda: stub.CancelJob(pb.CancelJobRequest(job_id="nope"), metadata=md),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_uploaded_media_can_be_edited(daemon, root):
    stub, md = connect(daemon)
    data = BIKES.read_bytes()
    chunks = [pb.MediaChunk(filename="bikes.mp4", data=data[i : i + 200_000]) for i in range(0, len(data), 200_000)]
    uploaded = stub.UploadMedia(iter(chunks), metadata=md)
    assert uploaded.size_bytes == len(data) and uploaded.media_id.endswith(".mp4")
    job = stub.SubmitEdit(
        request(root, source_path="", media_id=uploaded.media_id, output="", out_frames_dir="", stream_frames=True),
        metadata=md,
    ).job_id
    events = watch(stub, md, job)
    pngs = [e.frame.png for e in events if e.WhichOneof("kind") == "frame"]
    assert len(pngs) == 3 and all(p.startswith(b"\x89PNG") for p in pngs)


def test_tokens_are_required_except_for_health(daemon, root):
    for token in (None, "wrong"):
        stub, md = connect(daemon, token)
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetInfo(pb.GetInfoRequest(), metadata=md)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.WatchJob(pb.WatchJobRequest(job_id="x"), metadata=md))
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(daemon.address))
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    stub, md = connect(daemon)
    info = stub.GetInfo(pb.GetInfoRequest(), metadata=md)
    assert info.ready and info.protocol_version == 7 and info.device == "cpu" and info.versions["torch"]
    endpoint = daemon.config.endpoint_file
    assert stat.S_IMODE(endpoint.stat().st_mode) == 0o600
    assert stat.S_IMODE(endpoint.parent.stat().st_mode) == 0o700
    data = json.loads(endpoint.read_text())
    assert data["token"] == daemon.token and data["address"] == daemon.address


def test_health_is_not_serving_while_the_model_loads(root, pipeline):
    release = threading.Event()

    def slow_factory():
        release.wait(30)
        return pipeline

    server = make_daemon(root, slow_factory)
    server.start()
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
        check = health_pb2.HealthCheckRequest(service="v2vz.v1.Editor")
        assert health.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
        release.set()
        assert server.wait_ready(30)
        assert health.Check(check).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        release.set()
        server.stop()


def test_a_queued_job_survives_a_restart(root, pipeline):
    never = threading.Event()
    first = make_daemon(root, lambda: (never.wait(60), pipeline)[1])  # never ready: the job stays queued
    first.start()
    stub, md = connect(first)
    job_id = stub.SubmitEdit(request(root), metadata=md).job_id
    first.stop(grace=0.5)
    never.set()
    second = make_daemon(root, lambda: pipeline)
    second.start()
    try:
        stub, md = connect(second)
        events = watch(stub, md, job_id)
        assert events[-1].WhichOneof("kind") == "done"
        assert media.probe(events[-1].done.output).frame_count == 3
    finally:
        second.stop()


def test_a_running_job_is_requeued_after_a_crash(root, pipeline):
    first = make_daemon(root, lambda: pipeline)
    first.start()
    first.wait_ready(30)
    stub, md = connect(first)
    job_id = stub.SubmitEdit(request(root, options={"steps": "12", "inversion": "null-text"}), metadata=md).job_id
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120):
        if event.WhichOneof("kind") == "progress" and event.progress.stage == "null-text":
            break
    first.stop(grace=0.5)  # the worker stops mid-job; the journal still says running
    second = make_daemon(root, lambda: pipeline)
    second.start()
    try:
        stub, md = connect(second)
        events = watch(stub, md, job_id)
        assert events[-1].WhichOneof("kind") == "done"
        summary = {j.job_id: j for j in stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs}[job_id]
        assert summary.attempts == 2
    finally:
        second.stop()


def test_reprompt_hits_the_cache_and_a_changed_source_misses(daemon, root):
    clip = root / "clip.mp4"
    rng = np.random.default_rng(0)
    write_mp4((rng.random((6, 48, 64, 3)) * 255).astype(np.uint8), clip, Fraction(24))
    stub, md = connect(daemon)

    def run(prompt: str, name: str) -> tuple[pb.Done, list[str]]:
        job = stub.SubmitEdit(request(root / name, source_path=str(clip), start=1, prompt=prompt), metadata=md).job_id
        events = watch(stub, md, job)
        stages = [e.progress.stage for e in events if e.WhichOneof("kind") == "progress"]
        cached = [e.progress.cached for e in events if e.WhichOneof("kind") == "progress"]
        return events[-1].done, [f"{stage}{' (cached)' if c else ''}" for stage, c in zip(stages, cached, strict=True)]

    cold, cold_stages = run("a red square", "one")
    warm, warm_stages = run("a blue circle", "two")
    assert not cold.inversion_cached and "null-text" in cold_stages
    assert warm.inversion_cached and "null-text" not in warm_stages
    assert [s for s in warm_stages if s.startswith("inversion")] == ["inversion (cached)"]
    write_mp4((rng.random((6, 48, 64, 3)) * 255).astype(np.uint8), clip, Fraction(24))  # same path, new content
    changed, _ = run("a blue circle", "three")
    assert not changed.inversion_cached


def test_out_of_memory_fails_the_job_and_the_daemon_serves_the_next(daemon, root, monkeypatch):
    stub, md = connect(daemon)
    original = daemon.slot.pipeline.edit
    calls = []

    def edit_once_oom(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(daemon.slot.pipeline, "edit", edit_once_oom)
    fixed = request(root / "a", options={"steps": "3", "window": "3"})  # a window the user chose is not shrunk
    failed = watch(stub, md, stub.SubmitEdit(fixed, metadata=md).job_id)[-1]
    assert failed.WhichOneof("kind") == "failed" and failed.failed.code == "RESOURCE_EXHAUSTED"
    assert "out of memory" in failed.failed.reason
    assert watch(stub, md, stub.SubmitEdit(request(root / "b"), metadata=md).job_id)[-1].WhichOneof("kind") == "done"


def test_an_automatic_window_that_runs_out_of_memory_is_retried_smaller(daemon, root, monkeypatch):
    stub, md = connect(daemon)
    original = daemon.slot.pipeline.edit
    sizes = []

    def edit_oom_above_one_frame(frames, *args, **kwargs):
        sizes.append(len(frames))
        if len(frames) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(frames, *args, **kwargs)

    monkeypatch.setattr(daemon.slot.pipeline, "edit", edit_oom_above_one_frame)
    events = watch(stub, md, stub.SubmitEdit(request(root / "a"), metadata=md).job_id)
    assert events[-1].WhichOneof("kind") == "done" and len(events[-1].done.frame_paths) == 3
    assert sizes == [3, 1, 1, 1]
    windows = [(e.progress.step, e.progress.total) for e in events if e.progress.stage == "window"]
    assert windows == [(1, 1), (1, 3), (2, 3), (3, 3)]  # the plan grows from one window of 3 to three of 1
    edits = [(e.progress.window, e.progress.windows) for e in events if e.progress.stage == "edit"]
    assert sorted(set(edits)) == [(1, 3), (2, 3), (3, 3)]  # every step says which window it belongs to


def test_listening_beyond_loopback_needs_a_flag(root, pipeline):
    with pytest.raises(InvalidArgument, match="allow-remote"):
        make_daemon(root, lambda: pipeline, listen="0.0.0.0:0").start()
    server = make_daemon(root, lambda: pipeline, listen="127.0.0.1:0")
    server.start()
    try:
        assert server.address.startswith("127.0.0.1:") and not server.address.endswith(":0")
        assert server.wait_ready(30)
        stub, md = connect(server)
        assert stub.GetInfo(pb.GetInfoRequest(), metadata=md).ready
    finally:
        server.stop()


def test_disconnecting_cancels_only_when_asked(daemon, root):
    stub, md = connect(daemon)
    kept = stub.SubmitEdit(request(root / "kept", options={"steps": "30"}), metadata=md).job_id
    for _ in stub.WatchJob(pb.WatchJobRequest(job_id=kept), metadata=md, timeout=60):
        break  # a client that goes away without asking for anything
    dropped = stub.SubmitEdit(request(root / "dropped", options={"steps": "30"}), metadata=md).job_id
    call = stub.WatchJob(pb.WatchJobRequest(job_id=dropped, cancel_on_disconnect=True), metadata=md, timeout=60)
    next(call)
    call.cancel()
    assert watch(stub, md, kept)[-1].WhichOneof("kind") == "done"
    assert watch(stub, md, dropped)[-1].WhichOneof("kind") == "cancelled"


def test_reflection_lists_the_services(daemon):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(daemon.address))
    _, md = connect(daemon)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(stub.ServerReflectionInfo(iter([request]), metadata=md, timeout=10))
    names = {service.name for service in reply.list_services_response.service}
    assert {"v2vz.v1.Editor", "grpc.health.v1.Health"} <= names


def documented(pattern: str) -> set[str]:
    """The backticked names in the docs/events.md line that matches `pattern` (e.g. the `stage` row)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    (line,) = [row for row in text.splitlines() if re.search(pattern, row)]
    return set(re.findall(r"`([a-z-]+)`", line.split("|")[3] if line.startswith("|") else line))


def test_the_stages_and_states_sent_are_exactly_the_documented_ones(daemon, root, model_cache):
    """docs/events.md, the contract's enums and what a real daemon sends name the same stages, types and states."""
    from v2vz_engine.models import ensure_builtin

    stub, md = connect(daemon)
    two_windows = {"steps": "2", "window": "2", "inversion": "null-text"}
    first = watch(stub, md, stub.SubmitEdit(request(root / "a", frames=4, options=two_windows), metadata=md).job_id)
    again = watch(stub, md, stub.SubmitEdit(request(root / "b", frames=4, options=two_windows), metadata=md).job_id)
    tiny_folder = str(ensure_builtin("tiny", model_cache))  # another model than the daemon's: it is loaded first
    other = request(root / "c", frames=1, options={"steps": "1"}, model=tiny_folder)
    anchored = request(root / "d", frames=4, options={**two_windows, "window_links": "anchored"})
    events = first + again + watch(stub, md, stub.SubmitEdit(other, metadata=md).job_id)
    events += watch(stub, md, stub.SubmitEdit(anchored, metadata=md).job_id)
    sent_stages = {e.progress.stage for e in events if e.WhichOneof("kind") == "progress"}
    # `retry` comes only from a cluster whose worker died (tests/daemon/test_cluster.py sends and checks it)
    # retry: a cluster's (tests/daemon/test_cluster.py); mask: a local edit's (tests/daemon/test_local_edits_daemon.py)
    assert sent_stages | {Stage.RETRY, Stage.MASK} == set(Stage) == documented(r"^\| `stage`")
    assert any(e.progress.cached for e in again if e.WhichOneof("kind") == "progress")  # the cached inversion too
    sent_types = {e.WhichOneof("kind") for e in events}
    assert sent_types | {"failed", "cancelled"} == set(DAEMON_EVENT_TYPES) == documented(r"^\| `type` .*`queued`")
    states = {j.state for j in stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs}
    assert states == {"done"} and set(JobState) == documented(r"^\| `state` ")
