"""`v2vz jobs` shows a local edit (issue 25): its words, its matte (with the digest that tells two versions of one
file apart) and its mask folder, in the table and in `--json`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np

from v2vz.api.v1 import editor_pb2 as pb
from v2vz.cli.jobs import job_block

from ..cli_kit import lines, run
from ..daemon_kit import connect, request


def summary(**changes) -> pb.JobSummary:
    fields = dict(job_id="j1", state="queued", source="/clips/a.mp4", prompt="a blue car", start=0, frames=4)
    fields.update(changes)
    return pb.JobSummary(**fields)


def test_the_table_says_what_bounds_a_local_edit_and_nothing_for_a_whole_frame():
    local = summary(
        options={"edit_only": "car", "self_replace": "0.4"},
        matte="/mattes/car.mov",
        matte_digest="0123456789abcdef" * 4,
        mask_dir="/out/masks",
    )
    block = job_block(local)
    assert "    options: edit_only=car self_replace=0.4" in block
    assert "    local edit: only 'car', matte /mattes/car.mov (sha256 0123456789ab), masks -> /out/masks" in block
    assert job_block(summary(matte="/m.png"))[-1] == "    local edit: matte /m.png"  # no digest yet: none shown
    assert not [line for line in job_block(summary(options={"steps": "3"})) if "local edit" in line]


def write_matte(path: Path, width: int, height: int, frames: int) -> Path:
    """A matte video: white on the left half (edit), black on the right (keep)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        pixels = np.zeros((height, width, 3), np.uint8)
        pixels[:, : width // 2] = 255
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_jobs_json_and_table_carry_the_matte_its_digest_and_the_mask_folder_and_none_for_a_whole_frame(
    daemon, root, endpoint
):
    matte = write_matte(root / "matte.mp4", 640, 272, 20)  # bikes.mp4's shape, longer than the range
    masks = root / "masks"
    stub, md = connect(daemon)
    job = request(
        root / "out",
        options={"steps": "2", "edit_only": "horses"},
        matte=str(matte),
        matte_start=5,
        mask_dir=str(masks),
    )
    job_id = stub.SubmitEdit(job, metadata=md).job_id
    whole = stub.SubmitEdit(request(root / "whole", options={"steps": "2"}), metadata=md).job_id
    try:
        listed = run(["jobs", "--json"], endpoint)
        assert listed.returncode == 0, listed.stderr
        rows = {row["job_id"]: row for row in json.loads(listed.stdout)}
        row, plain = rows[job_id], rows[whole]
        assert (plain["matte"], plain["matte_digest"], plain["mask_dir"]) == (None, None, None)
        assert (row["matte"], row["mask_dir"], row["options"]["edit_only"]) == (str(matte), str(masks), "horses")
        assert re.fullmatch(r"[0-9a-f]{64}", row["matte_digest"]), row
        table = run(["jobs"], endpoint, columns=300)
        assert table.returncode == 0, table.stderr
        digest = row["matte_digest"][:12]
        wanted = f"    local edit: only 'horses', matte {matte} from its frame 5 (sha256 {digest}), masks -> {masks}"
        assert wanted in lines(table.stdout), table.stdout
    finally:
        for cancel in (whole, job_id):
            stub.CancelJob(pb.CancelJobRequest(job_id=cancel), metadata=md)
