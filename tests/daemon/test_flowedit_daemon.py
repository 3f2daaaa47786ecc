"""FlowEdit jobs on the daemon: the job's model (tiny-wan) is loaded for it beside the daemon's `tiny`, the method
is recorded in the job listing and the take, nothing is cached, cancel stops within a step, and a method on a
model of the other family is refused at submit with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from v2vz.api.v1 import editor_pb2 as pb
from v2vz_engine import media

from ..daemon_kit import connect, request, watch

V2VZ = str(Path(sys.executable).with_name("v2vz"))
FLOWEDIT = {"method": "flowedit", "steps": "4"}


def flow_request(folder: Path, **changes) -> pb.SubmitEditRequest:
    return request(folder, **{"model": "tiny-wan", "options": dict(FLOWEDIT), "frames": 6, **changes})


def test_a_flowedit_job_loads_its_wan_model_and_writes_every_frame(daemon, root):
    stub, md = connect(daemon)
    events = watch(stub, md, stub.SubmitEdit(flow_request(root / "a"), metadata=md).job_id)
    kinds = [event.WhichOneof("kind") for event in events]
    assert kinds[-1] == "done", events[-1]
    stages = [
        (e.progress.stage, e.progress.step, e.progress.total) for e in events if e.WhichOneof("kind") == "progress"
    ]
    assert ("load-model", 1, 1) in stages and ("edit", 2, 2) in stages  # 70% of 4 steps edit: 2
    assert not any(stage == "inversion" for stage, _, _ in stages)  # FlowEdit inverts nothing
    done = events[-1].done
    info = media.probe(done.output)
    assert (info.frame_count, info.width, info.height) == (6, 640, 272) and not done.inversion_cached
    (listed,) = [job for job in stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs if job.job_id == events[0].job_id]
    assert listed.model == "tiny-wan" and listed.options["method"] == "flowedit"
    record = json.loads(Path(done.output + ".v2vz.json").read_text())
    assert record["job"]["options"]["method"] == "flowedit" and record["job"]["model"] == "tiny-wan"
    again = watch(stub, md, stub.SubmitEdit(flow_request(root / "b"), metadata=md).job_id)
    assert again[-1].WhichOneof("kind") == "done" and not again[-1].done.inversion_cached  # a re-prompt: no cache
    back = watch(stub, md, stub.SubmitEdit(request(root / "c"), metadata=md).job_id)  # the daemon's tiny again
    assert back[-1].WhichOneof("kind") == "done"


def test_a_flowedit_job_is_cancelled_within_one_step(daemon, root):
    stub, md = connect(daemon)
    job_id = stub.SubmitEdit(
        flow_request(root / "slow", options={"method": "flowedit", "steps": "40"}), metadata=md
    ).job_id
    seen = []
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=md, timeout=120):
        seen.append(event)
        if event.WhichOneof("kind") == "progress" and (event.progress.stage, event.progress.step) == ("edit", 2):
            stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=md)
    assert seen[-1].WhichOneof("kind") == "cancelled"
    edits = [e.progress.step for e in seen if e.WhichOneof("kind") == "progress" and e.progress.stage == "edit"]
    assert edits[-1] <= 3 and not (root / "slow" / "out.mp4").exists()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"options": {"method": "flowedit"}}, "method flowedit does not run on model 'tiny' (sd): pass --model a Wan"),
        ({"model": "tiny-wan", "options": {}}, "method vid2vid-zero does not run on model 'tiny-wan' (wan)"),
        ({"options": {"n_avg": "2"}}, "n-avg is FlowEdit's: add --method flowedit"),
        ({"model": "tiny-wan", "options": {"method": "flowedit", "n_min": "40"}}, "n-min must be below n-max"),
        ({"options": {"method": "tokenflow"}}, "method must be vid2vid-zero or flowedit"),
    ],
)
def test_a_method_that_cannot_run_is_refused_at_submit_in_one_line(daemon, root, changes, words):
    stub, md = connect(daemon)
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitEdit(request(root, **changes), metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in caught.value.details() and "\n" not in caught.value.details(), caught.value.details()


def test_the_cli_refuses_flowedit_on_a_stable_diffusion_model_in_one_line(tmp_path):
    done = subprocess.run(
        [V2VZ, "edit", str(Path(request(tmp_path).source_path)), "--local", "--model", "tiny", "--method", "flowedit"]
        + ["-s", "bikes", "-p", "horses", "--out", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "method flowedit does not run on model 'tiny'" in done.stderr and not (tmp_path / "o.mp4").exists()
