"""A restart removes what its interrupted jobs were writing (hidden `.NAME.*.part.*` files), and nothing else."""

from __future__ import annotations

import threading

from v2vz.api.v1 import editor_pb2 as pb

from ..daemon_kit import connect, make_daemon, request, watch


def test_a_restart_sweeps_the_temporaries_of_its_interrupted_jobs(root, pipeline):
    hold = threading.Event()
    first = make_daemon(root, lambda: (hold.wait(60), pipeline)[1])  # the job stays queued: we make it 'running'
    first.start()
    stub, md = connect(first)
    out = root / "out"
    job_id = stub.SubmitEdit(request(out, options={"steps": "2"}), metadata=md).job_id
    assert first.journal.claim_next().job_id == job_id  # as a worker that was killed mid-job left it
    first.stop()
    hold.set()
    out.mkdir()
    (out / "frames").mkdir()
    left = [out / ".out.mp4.k3j2h1.part.mp4", out / "frames" / ".frame_000001.png.q9w8e7.part.png"]
    others = [out / ".notes.txt.part.mp4", out / "frames" / ".keep.png", out / "frames" / "frame_000000.png"]
    for path in left + others:
        path.write_bytes(b"partial")
    second = make_daemon(root, lambda: pipeline)
    second.start()
    try:
        assert not any(path.exists() for path in left)
        assert all(path.read_bytes() == b"partial" for path in others)  # not this job's temporaries
        stub, md = connect(second)
        events = watch(stub, md, job_id)
        assert events[-1].WhichOneof("kind") == "done"  # re-queued and run again
        (summary,) = stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs
        assert summary.attempts == 2
    finally:
        second.stop()
