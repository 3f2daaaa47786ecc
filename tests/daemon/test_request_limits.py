"""What a client sends is bounded and checked at submit: option ranges, string sizes, paged listings, and requests
that do not parse, each refused with the right status and one short line; cancel reaches inside inner loops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from v2vz.api.job import EditJob
from v2vz.api.v1 import editor_pb2 as pb

from ..daemon_kit import connect, make_daemon, request, watch


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"options": {"null_inner_steps": "100000"}}, "null_inner_steps must be between 1 and 100, got 100000"),
        ({"options": {"null_lr": "nan"}}, "null_lr must be between"),
        ({"options": {"null_lr": "inf"}}, "null_lr must be between"),
        ({"options": {"guidance": "nan"}}, "guidance must be between"),
        ({"prompt": "a jeep " * 800_000}, "at most 2000 are accepted"),  # 5.6 MB
        ({"source_prompt": "x" * 2001}, "the source prompt has 2001 characters"),
        ({"client": "c" * 101}, "client is 101 characters long"),
        ({"output": "/" + "a" * 5000 + ".mp4"}, "output is 5005 characters long"),
        ({"source_fps": "1e400"}, "frame rate '1e400' must be above 0 and at most 1000 fps"),
        ({"source_fps": "24"}, "a source frame rate is for image sequences"),  # bikes.mp4 is a video
        ({"options": {"steps": "9" * 200}}, "longer than 100 characters"),
    ],
)
def test_out_of_range_requests_are_refused_at_submit_in_one_short_line(daemon, root, changes, words):
    stub, md = connect(daemon)
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitEdit(request(root, **changes), metadata=md, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details()
    assert words in details and "\n" not in details and len(details) < 400, details[:500]
    assert time.monotonic() - began < 2
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == []


def test_listings_are_paged_and_stay_small_even_over_an_old_journal(root, pipeline):
    never = threading.Event()
    server = make_daemon(root, lambda: (never.wait(60), pipeline)[1])  # never ready: the jobs stay queued
    server.start()
    try:
        stub, md = connect(server)
        ids = [stub.SubmitEdit(request(root / str(n)), metadata=md).job_id for n in range(5)]
        # An older daemon accepted any prompt: such a journal still lists in a small reply.
        huge = EditJob.from_dict({**server.journal.get(ids[0]).job.to_dict(), "prompt": "p" * 5_000_000})
        ids.append(server.journal.submit(huge).job_id)
        first = stub.ListJobs(pb.ListJobsRequest(limit=2), metadata=md)
        assert [job.job_id for job in first.jobs] == ids[::-1][:2] and first.next_page_token == ids[4]
        assert len(first.jobs[0].prompt) == 2000 and first.ByteSize() < 20_000
        second = stub.ListJobs(pb.ListJobsRequest(limit=2, page_token=first.next_page_token), metadata=md)
        assert [job.job_id for job in second.jobs] == ids[::-1][2:4]
        last = stub.ListJobs(pb.ListJobsRequest(limit=50, page_token=second.next_page_token), metadata=md)
        assert [job.job_id for job in last.jobs] == ids[::-1][4:] and last.next_page_token == ""
        assert len(stub.ListJobs(pb.ListJobsRequest(limit=100_000), metadata=md).jobs) == 6  # a page is capped
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListJobs(pb.ListJobsRequest(page_token="nope"), metadata=md)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        from v2vz.api.endpoint import read_endpoint
        from v2vz.client import Client

        with Client(read_endpoint(server.config.endpoint_file)) as client:  # the client pages by itself
            assert [job.job_id for job in client.jobs(limit=5)] == ids[::-1][:5]
    finally:
        never.set()
        server.stop()


def test_odd_requests_get_a_status_not_a_traceback(daemon, root):
    stub, md = connect(daemon)
    job_id = stub.SubmitEdit(request(root, options={"steps": "2"}), metadata=md).job_id
    assert watch(stub, md, job_id)[-1].WhichOneof("kind") == "done"
    past = list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=2**64 - 1), metadata=md, timeout=10))
    assert [event.WhichOneof("kind") for event in past] == ["done"]  # attached past the end: the outcome
    long_name = "clip." + "x" * 300
    uploaded = stub.UploadMedia(iter([pb.MediaChunk(filename=long_name, data=b"\0" * 10)]), metadata=md)
    assert len(uploaded.media_id) == 24  # no 300-character extension in a file name
    proper = stub.UploadMedia(iter([pb.MediaChunk(filename="take.MOV", data=b"\0" * 10)]), metadata=md)
    assert proper.media_id.endswith(".mov")
    channel = grpc.insecure_channel(daemon.address)
    for method in ("SubmitEdit", "ListJobs", "CancelJob"):
        garbage = channel.unary_unary(f"/v2vz.v1.Editor/{method}", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            garbage(b"\xff\xff\xff\xff garbage", metadata=md, timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert refused.value.details() == "the request is not a valid v2vz.v1 message"


def test_a_cancel_is_honoured_inside_the_null_text_inner_loop(daemon, root):
    stub, md = connect(daemon)
    options = {"steps": "3", "inversion": "null-text", "null_inner_steps": "100", "null_early_stop": "false"}
    options["window"] = "4"
    job_id = stub.SubmitEdit(request(root, frames=4, options=options), metadata=md).job_id
    events = iter(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120))
    for event in events:
        if event.WhichOneof("kind") == "progress" and event.progress.stage == "inversion" and event.progress.step == 3:
            break  # null-text starts now: 3 x 100 inner steps lie ahead
    time.sleep(0.5)  # well inside the first step's inner loop
    began = time.monotonic()
    assert stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=md).state == "running"
    rest = list(events)
    took = time.monotonic() - began
    assert rest[-1].WhichOneof("kind") == "cancelled" and "inner step" in rest[-1].cancelled.reason
    assert not [e for e in rest if e.WhichOneof("kind") == "progress" and e.progress.stage == "null-text"]
    assert took < 5, took  # one UNet call and its backward on `tiny`, not the 300 inner steps (minutes)


def test_a_relative_listen_path_is_written_absolute(root, pipeline, monkeypatch):
    monkeypatch.chdir(root)
    server = make_daemon(root, lambda: pipeline, listen="unix:rel.sock")
    server.start()
    try:
        assert server.address == f"unix:{root / 'rel.sock'}" and Path(server.address[5:]).is_absolute()
        from v2vz.api.endpoint import read_endpoint

        assert read_endpoint(server.config.endpoint_file).address == server.address
    finally:
        server.stop()


def test_every_option_has_its_range_documented():
    """docs/daemon.md's table names every EditOptions field with exactly the range or choices that are checked."""
    import dataclasses
    import re
    import typing

    from v2vz.api.job import OPTION_RANGES, EditOptions

    text = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (.+?) \|$", text, flags=re.MULTILINE))
    hints = typing.get_type_hints(EditOptions)
    assert set(rows) == {field.name for field in dataclasses.fields(EditOptions)}
    for name, documented in rows.items():
        kind = hints[name]
        if name in OPTION_RANGES:
            low, high = OPTION_RANGES[name]
            assert documented.startswith(f"{low} to {high}"), (name, documented)
        elif kind is bool:
            assert documented == "true or false", name
        elif kind is str:  # edit_only: words, checked against the prompts
            assert documented.startswith("words of the source or target prompt"), (name, documented)
        else:
            choices = typing.get_args(kind)
            assert documented == ", ".join(choices[:-1]) + f" or {choices[-1]}", (name, documented)
