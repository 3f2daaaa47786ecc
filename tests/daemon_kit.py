"""Helpers for tests of an in-process daemon (the `root` and `daemon` fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import grpc

from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.v1 import editor_pb2_grpc
from v2vz_daemon.server import Daemon, DaemonConfig

from .conftest import CLIPS

BIKES = CLIPS / "bikes.mp4"


def make_daemon(root: Path, pipeline_factory, **config) -> Daemon:
    """A daemon with its state in root/cache and its endpoint file in root/run (both overridable)."""
    config = {"cache_dir": root / "cache", "endpoint_file": root / "run" / "endpoint.json", **config}
    return Daemon(DaemonConfig(model="tiny", **config), pipeline_factory=pipeline_factory)


def connect(daemon: Daemon, token: str | None = "own") -> tuple[editor_pb2_grpc.EditorStub, list]:
    channel = grpc.insecure_channel(daemon.address)
    metadata = [] if token is None else [("authorization", f"Bearer {daemon.token if token == 'own' else token}")]
    return editor_pb2_grpc.EditorStub(channel), metadata


def request(tmp: Path, **changes) -> pb.SubmitEditRequest:
    fields = dict(
        source_path=str(BIKES),
        start=10,
        frames=3,
        source_prompt="people riding bikes on a road",
        prompt="people riding horses on a road",
        options={"steps": "3", "inversion": "null-text"},  # the method's stages, null-text included
        output=str(tmp / "out.mp4"),
        out_frames_dir=str(tmp / "frames"),
    )
    fields.update(changes)
    return pb.SubmitEditRequest(**fields)


def watch(stub, metadata, job_id: str, after: int = 0, limit: int | None = None) -> list[pb.JobEvent]:
    events = []
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=after), metadata=metadata, timeout=120):
        events.append(event)
        if limit and len(events) >= limit:
            break
    return events
