"""Open event streams never starve the daemon: more streams than gRPC threads, and unary calls and health still
answer at once; streams beyond the cap are refused with RESOURCE_EXHAUSTED and one line."""

from __future__ import annotations

import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from v2vz.api.v1 import editor_pb2 as pb

from ..daemon_kit import connect, make_daemon, request


def test_more_streams_than_threads_leave_unary_calls_and_health_answering(root, pipeline):
    never = threading.Event()
    server = make_daemon(root, lambda: (never.wait(120), pipeline)[1], rpc_threads=8, max_streams=6)  # jobs stay queued
    server.start()
    try:
        stub, md = connect(server)
        job_id = stub.SubmitEdit(request(root), metadata=md).job_id
        calls = [
            stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=60) for _ in range(12)
        ]  # 12 streams asked for, 8 threads
        opened, refused = [], []
        for call in calls:
            try:
                first = next(call)  # the job's `queued` event: the stream is open and waits for more
                assert first.WhichOneof("kind") == "queued"
                opened.append(call)
            except grpc.RpcError as error:
                refused.append(error)
        assert len(opened) == 6 and len(refused) == 6
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "already streams the events of 6 jobs" in error.details() and "\n" not in error.details()
        began = time.monotonic()
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        assert stub.GetInfo(pb.GetInfoRequest(), metadata=md, timeout=2).version
        assert stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=md, timeout=2).state == "cancelled"
        assert time.monotonic() - began < 2.0
        for call in opened:  # the cancel reaches every open stream, which then ends
            assert [event.WhichOneof("kind") for event in call] == ["cancelled"]
        # The streams' threads are free again: a new stream opens.
        assert next(iter(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=10)))
    finally:
        never.set()
        server.stop()
