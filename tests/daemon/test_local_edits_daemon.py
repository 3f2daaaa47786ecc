"""A local edit through the daemon: the matte's digest in the journal and the take's sidecar, the mask stage in the
events (and what it says when a frame has nothing to edit), the masks on disk, `ListJobs` naming the matte."""

from __future__ import annotations

import hashlib
import json

from PIL import Image

from v2vz.api.events import Stage
from v2vz.api.v1 import editor_pb2 as pb

from ..daemon_kit import connect, request, watch


def test_a_matte_job_reports_its_mask_and_records_its_matte(daemon, root):
    stub, md = connect(daemon)
    matte = root / "matte.png"
    Image.new("L", (640, 272), 0).save(matte)  # black: nothing to edit, the source comes back
    options = {"steps": "2", "inversion": "direct", "size": "64", "edit_only": "bikes", "self_replace": "0.4"}
    local = request(root, options=options, matte=str(matte), mask_dir=str(root / "masks"), output="")
    reply = stub.SubmitEdit(local, metadata=md)
    events = watch(stub, md, reply.job_id)
    assert events[-1].WhichOneof("kind") == "done", events[-1]
    masks = [event.progress for event in events if event.WhichOneof("kind") == "progress"]
    masks = [progress for progress in masks if progress.stage == Stage.MASK]
    assert [(mask.step, mask.total) for mask in masks] == [(0, 3)]
    assert masks[0].reason.startswith("nothing to edit in frame(s) 0..2 (the matte leave(s) them out)")
    assert sorted(path.name for path in (root / "masks").iterdir()) == [f"mask_{i:06d}.png" for i in (10, 11, 12)]
    digest = hashlib.sha256(matte.read_bytes()).hexdigest()
    (summary,) = stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs
    assert (summary.matte, summary.matte_digest, summary.mask_dir) == (str(matte), digest, str(root / "masks"))
    assert summary.options["edit_only"] == "bikes" and summary.options["self_replace"] == "0.4"
    sidecar = json.loads(next((root / "frames").glob("*.json")).read_text())
    assert sidecar["job"]["matte_digest"] == digest and sidecar["job"]["matte_start"] == 0
