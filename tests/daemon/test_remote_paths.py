"""With --allow-remote, remote clients read and write only inside --media-root (no `..`, no link out of it); uploads
and streamed frames are theirs; clients on the Unix socket keep full paths."""

from __future__ import annotations

import os

import grpc
import pytest

from v2vz.api.v1 import editor_pb2 as pb

from ..conftest import CLIPS
from ..daemon_kit import connect, make_daemon, request, watch


@pytest.fixture
def remote_daemon(root, pipeline):
    media_root = root / "media"
    media_root.mkdir()
    (media_root / "clip.mp4").write_bytes((CLIPS / "bikes.mp4").read_bytes())
    server = make_daemon(root, lambda: pipeline, listen="127.0.0.1:0", allow_remote=True, media_roots=(media_root,))
    server.start()
    assert server.wait_ready(30)
    yield server, media_root
    server.stop()


def test_remote_clients_stay_inside_the_media_roots(remote_daemon, root):
    server, media_root = remote_daemon
    stub, md = connect(server)
    outside = root / "victim.mp4"
    outside.write_bytes(b"precious")
    (media_root / "escape.mp4").symlink_to(CLIPS / "bikes.mp4")
    (media_root / "out-link").symlink_to(root)
    inside = str(media_root / "clip.mp4")
    refusals = {
        "a source outside": {"source_path": str(CLIPS / "bikes.mp4"), "output": str(media_root / "o.mp4")},
        "a source through ..": {"source_path": f"{media_root}/../media/clip.mp4", "output": str(media_root / "o.mp4")},
        "a source linked out": {"source_path": str(media_root / "escape.mp4"), "output": str(media_root / "o.mp4")},
        "an output outside": {"source_path": inside, "output": str(outside)},
        "an output through ..": {"source_path": inside, "output": f"{media_root}/../victim.mp4"},
        "an output in a linked folder": {"source_path": inside, "output": str(media_root / "out-link" / "v.mp4")},
        "frames outside": {"source_path": inside, "output": "", "out_frames_dir": str(root / "frames")},
    }
    for case, changes in refusals.items():
        fields = {"out_frames_dir": "", **changes}
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitEdit(request(root, **fields), metadata=md)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, case
        assert str(media_root) in refused.value.details() or "'..'" in refused.value.details(), case
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == [] and outside.read_bytes() == b"precious"
    job = request(root, source_path=inside, output=str(media_root / "out" / "edit.mp4"), out_frames_dir="")
    done = watch(stub, md, stub.SubmitEdit(job, metadata=md).job_id)[-1]
    assert done.WhichOneof("kind") == "done" and done.done.output == str(media_root / "out" / "edit.mp4")


def test_a_remote_client_uploads_and_streams_back(remote_daemon, root):
    server, _ = remote_daemon
    stub, md = connect(server)
    data = (CLIPS / "bikes.mp4").read_bytes()
    chunks = (pb.MediaChunk(filename="bikes.mp4", data=data[i : i + 2**20]) for i in range(0, len(data), 2**20))
    media_id = stub.UploadMedia(chunks, metadata=md).media_id
    streamed = request(root, source_path="", media_id=media_id, output="", out_frames_dir="", stream_frames=True)
    events = watch(stub, md, stub.SubmitEdit(streamed, metadata=md).job_id)
    frames = [e.frame for e in events if e.WhichOneof("kind") == "frame"]
    assert events[-1].WhichOneof("kind") == "done" and len(frames) == 3 and frames[0].png[:4] == b"\x89PNG"
    with pytest.raises(grpc.RpcError) as refused:  # naming a folder of the daemon's own for its frames: refused
        stub.SubmitEdit(request(root, media_id=media_id, output="", out_frames_dir=str(root)), metadata=md)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_local_clients_on_the_unix_socket_keep_full_paths(root, pipeline):
    media_root = root / "media"
    media_root.mkdir()
    server = make_daemon(
        root,
        lambda: pipeline,
        listen=f"unix:{root / 'run' / 'local.sock'}",
        allow_remote=True,
        media_roots=(media_root,),
    )
    server.start()
    try:
        assert server.wait_ready(30)
        stub, md = connect(server)
        job_id = stub.SubmitEdit(request(root / "anywhere", options={"steps": "2"}), metadata=md).job_id
        assert watch(stub, md, job_id)[-1].WhichOneof("kind") == "done"
        assert os.path.exists(root / "anywhere" / "out.mp4")
    finally:
        server.stop()
