"""Daily use through the installed `v2vz` command: models per job, status, ids you can copy, logs, progress in a
log, errors in seconds, and messages that say what happened."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from v2vz.api.v1 import editor_pb2 as pb

from ..cli_kit import lines, one_error, run
from ..conftest import CLIPS
from ..daemon_kit import connect, make_daemon, request, watch

BIKES = CLIPS / "bikes.mp4"
EDIT = ["-p", "people riding horses on a road", "-s", "people riding bikes on a road"]


def test_version_and_help_say_what_the_code_does():
    assert run(["--version"]).stdout.strip() == f"v2vz {__import__('v2vz').__version__}"
    top = run(["--help"]).stdout
    assert "Blender later" not in top and "<bool>" not in top
    edit = run(["edit", "--help"]).stdout
    assert "<bool>" not in edit and "[required]" in edit and "--source-prompt" in edit
    bad = run(["edit", str(BIKES), *EDIT, "--stepz", "3"])
    one_error(bad, "No such option: --stepz", "v2vz edit --help")
    missing = run(["jobs", "--limit"])
    one_error(missing, "--limit", "requires an argument")
    unknown_host = run(["plugin", "install", "premiere"])
    one_error(unknown_host, "premiere", "resolve", "blender")


def test_a_wrong_model_fails_in_under_two_seconds_with_one_helpful_line(tmp_path, endpoint):
    for args, env in (
        (["serve", "--model", "tinyy"], {"V2VZ_ENDPOINT": str(tmp_path / "none" / "endpoint.json")}),
        (["edit", str(BIKES), *EDIT, "--local", "--model", "tinyy", "--out", str(tmp_path / "o.mp4")], {}),
        (["edit", str(BIKES), *EDIT, "--model", "tinyy", "--out", str(tmp_path / "o.mp4")], endpoint),
        (["serve"], {"V2VZ_MODEL": "CompVis/stable-diffusion-v1-4", "V2VZ_ENDPOINT": str(tmp_path / "x.json")}),
    ):
        began = time.monotonic()
        done = run(args, env)
        took = time.monotonic() - began
        line = one_error(done, "is not available", "v2vz models")
        assert took < 2.0, (args, took)
        assert "Retrying" not in done.stderr and "Traceback" not in done.stderr
        if "tinyy" in line:
            assert "did you mean `tiny`?" in line and "v2vz models pull tinyy" in line
        else:
            assert "hub cache" in line and "v2vz models pull CompVis/stable-diffusion-v1-4" in line


def test_models_lists_the_built_in_ones_and_marks_the_resident(endpoint, model_cache):
    done = run(["models", "--json", "--cache-dir", str(model_cache)], endpoint)
    rows = {row["model"]: row for row in json.loads(done.stdout)}
    assert {"tiny", "sd15-random"} <= set(rows)
    assert rows["tiny"]["resident"] and rows["tiny"]["default"] and rows["tiny"]["kind"] == "built-in"
    table = run(["models"], endpoint).stdout
    assert re.search(r"^\* tiny\s+built-in", table, flags=re.MULTILINE), table
    offline = run(["models", "pull", "someone/model"], {"HF_HUB_OFFLINE": "1"})
    one_error(offline, "HF_HUB_OFFLINE")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory, model_cache) -> Path:
    """A second model on disk: `tiny` with its UNet's output scaled, so that its edits differ from tiny's."""
    import torch
    from diffusers import UNet2DConditionModel

    from v2vz_engine.models import ensure_builtin

    folder = tmp_path_factory.mktemp("models") / "tiny-other"
    shutil.copytree(ensure_builtin("tiny", model_cache), folder)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    with torch.no_grad():
        unet.conv_out.weight.mul_(3.0)
    unet.save_pretrained(folder / "unet")
    return folder


def test_each_job_names_its_model_and_the_daemon_swaps_them(daemon, root, other_model):
    stub, md = connect(daemon)
    first = watch(stub, md, stub.SubmitEdit(request(root / "a", options={"steps": "3"}), metadata=md).job_id)
    other = request(root / "b", options={"steps": "3"}, model=str(other_model))
    second = watch(stub, md, stub.SubmitEdit(other, metadata=md).job_id)
    assert stub.GetInfo(pb.GetInfoRequest(), metadata=md).model == str(other_model)
    third = watch(stub, md, stub.SubmitEdit(request(root / "c", options={"steps": "3"}), metadata=md).job_id)

    def stages(events):
        return [(e.progress.stage, e.progress.step) for e in events if e.WhichOneof("kind") == "progress"]

    assert ("load-model", 0) not in stages(first)  # the default was on the device already
    assert stages(second)[:3] == [("start", 0), ("load-model", 0), ("load-model", 1)]
    assert stages(third)[:3] == [("start", 0), ("load-model", 0), ("load-model", 1)]  # and back
    frames = [_frames(events[-1].done) for events in (first, second, third)]
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 10  # another model, another edit
    assert np.abs(frames[0].astype(int) - frames[2].astype(int)).max() <= 2  # the same model again
    info = stub.GetInfo(pb.GetInfoRequest(), metadata=md)
    assert info.model == "tiny" and info.default_model == "tiny"
    jobs = {job.model for job in stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs}
    assert jobs == {"tiny", str(other_model)}


def _frames(done: pb.Done) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(path)) for path in done.frame_paths])


def test_remote_clients_may_name_only_allowed_models(root, pipeline, other_model):
    server = make_daemon(root, lambda: pipeline, listen="127.0.0.1:0", allow_remote=True, media_roots=(root,))
    server.start()
    try:
        stub, md = connect(server)
        clip = root / "clip.mp4"
        clip.write_bytes(BIKES.read_bytes())
        job = request(root, source_path=str(clip), model=str(other_model), out_frames_dir="")
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitEdit(job, metadata=md)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and "tiny" in refused.value.details()
    finally:
        server.stop()


def test_status_at_a_glance(daemon, endpoint, root):
    done = run(["status"], endpoint)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for words in (daemon.address, "protocol 7", "tiny (ready)", "cpu, float32", "queue", "running", "journal"):
        assert words in text, text
    data = json.loads(run(["status", "--json"], endpoint).stdout)
    assert data["address"] == daemon.address and data["queued"] == 0 and data["running_job"] is None
    one_error(run(["status"], {"V2VZ_ENDPOINT": str(root / "none.json")}), "no v2vz daemon is running")


def test_ids_are_whole_and_any_unique_prefix_works(root, pipeline):
    hold = threading.Event()
    server = make_daemon(root, lambda: (hold.wait(60), pipeline)[1])  # jobs stay queued
    server.start()
    env = {"V2VZ_ENDPOINT": str(server.config.endpoint_file)}
    try:
        stub, md = connect(server)
        ids = [stub.SubmitEdit(request(root / str(n)), metadata=md).job_id for n in range(20)]
        table = run(["jobs", "--limit", "20"], env).stdout
        assert all(job_id in table for job_id in ids), table  # 80 columns, no id cut
        unique = next(p for p in (i[:6] for i in ids) if sum(j.startswith(p) for j in ids) == 1)
        full = next(j for j in ids if j.startswith(unique))
        done = run(["cancel", unique], env)
        assert done.returncode == 0 and done.stdout.strip() == f"{full}: cancelled", done.stdout
        shared = next(c for c in "0123456789abcdef" if sum(j.startswith(c) for j in ids) >= 2)  # 20 ids, 16 digits
        ambiguous = one_error(run(["attach", shared], env), f"{shared!r} starts more than one job id")
        assert sum(j in ambiguous for j in ids if j.startswith(shared)) >= 2
        again = run(["cancel", full], env)
        assert again.returncode == 1 and again.stdout.strip() == f"{full}: already cancelled, nothing to cancel"
    finally:
        hold.set()
        server.stop()


def test_edit_prints_its_id_and_a_long_prompt_says_what_is_dropped(daemon, endpoint, tmp_path):
    words = " ".join(f"word{n}" for n in range(108))
    done = run(
        ["edit", str(BIKES), "-p", words, "-s", "bikes", "--steps", "2", "--out", str(tmp_path / "o.mp4")], endpoint
    )
    assert done.returncode == 0, done.stderr
    said = lines(done.stderr)
    accepted = [line for line in said if line.startswith("job ") and "accepted" in line]
    assert len(accepted) == 1 and re.search(r"job [0-9a-f]{12} accepted", accepted[0]), said
    note = [line for line in said if line.startswith("note: the prompt is")]
    assert note and "words are dropped" in note[0] and "word107" in note[0], said
    assert said[-1].startswith(f"wrote {tmp_path / 'o.mp4'}: 8 frames in "), said


def test_attach_to_a_finished_job_says_the_same_as_edit(daemon, endpoint, tmp_path):
    done = run(["edit", str(BIKES), *EDIT, "--steps", "2", "--frames", "3", "--out", str(tmp_path / "o.mp4")], endpoint)
    job_id = re.search(r"job ([0-9a-f]{12}) accepted", done.stderr).group(1)
    again = run(["attach", job_id[:8]], endpoint)
    assert again.returncode == 0 and lines(again.stderr)[-1] == lines(done.stderr)[-1], (done.stderr, again.stderr)
    assert "3 frames in" in lines(again.stderr)[-1]


def test_jobs_and_logs_record_what_happened(daemon, endpoint, tmp_path):
    out = tmp_path / "o.mp4"
    ok = run(["edit", str(BIKES), *EDIT, "--steps", "2", "--frames", "2", "--window", "1", "--out", str(out)], endpoint)
    job_id = re.search(r"job ([0-9a-f]{12}) accepted", ok.stderr).group(1)
    (row,) = [r for r in json.loads(run(["jobs", "--json"], endpoint).stdout) if r["job_id"] == job_id]
    assert row["output"] == str(out) and row["model"] == "tiny" and row["seconds"] > 0
    assert row["options"] == {"steps": "2", "window": "1"}
    assert (
        f"-> {out}" in run(["jobs"], endpoint).stdout and "options: steps=2 window=1" in run(["jobs"], endpoint).stdout
    )
    stub, md = connect(daemon)
    failing = stub.SubmitEdit(request(tmp_path / "f", options={"steps": "2"}), metadata=md).job_id
    stub.CancelJob(pb.CancelJobRequest(job_id=failing), metadata=md)
    watch(stub, md, failing)
    log = run(["logs", job_id[:7]], endpoint)
    assert log.returncode == 0, log.stderr
    text = log.stdout
    assert f"job {job_id} submitted" in text and f"job {job_id} started" in text
    assert re.search(rf"job {job_id} done in [0-9.]+ s: {re.escape(str(out))}", text), text
    assert job_id in text and failing not in text  # only that job's lines
    assert f"job {failing}" in run(["logs"], endpoint).stdout
    assert daemon.log_file.exists() and oct(daemon.log_file.stat().st_mode & 0o777) == "0o600"


def test_progress_in_a_log_is_plain_lines_with_an_eta(daemon, endpoint, tmp_path):
    args = ["edit", str(BIKES), *EDIT, "--steps", "6", "--frames", "2", "--out", str(tmp_path / "o.mp4")]
    done = run(args, {**endpoint, "V2VZ_PROGRESS_SECONDS": "0"})  # stderr is a pipe here
    said = lines(done.stderr)
    assert done.returncode == 0, done.stderr
    assert not any("━" in line or "\r" in line for line in said)  # no bars drawn into a log
    assert any(re.fullmatch(r"editing [2-5]/6, about \d+ s left", line) for line in said), said
    assert any(line == "DDIM inversion 6/6" for line in said), said


def test_out_with_an_unknown_extension_is_refused(tmp_path):
    for name in ("x.mkv", "x.avi"):
        done = run(["edit", str(BIKES), *EDIT, "--local", "--model", "tiny", "--out", str(tmp_path / name)])
        one_error(done, name, ".mp4", ".mov", "shot_%04d.exr", "a folder")
    done = run(["edit", str(BIKES), *EDIT, "--local", "--model", "tiny", "--out", str(tmp_path / "x.png")])
    one_error(done, "frame files need a frame number in the name, e.g. x_%04d.png")
    assert not list(tmp_path.iterdir())


def test_a_restarted_daemon_says_it_runs_a_job_again(root, pipeline):
    hold = threading.Event()
    first = make_daemon(root, lambda: (hold.wait(60), pipeline)[1])
    first.start()
    stub, md = connect(first)
    job_id = stub.SubmitEdit(request(root / "a", options={"steps": "2"}), metadata=md).job_id
    first.journal.claim_next()  # it was running when the daemon went away
    first.stop()
    hold.set()
    second = make_daemon(root, lambda: pipeline)
    second.start()
    try:
        env = {"V2VZ_ENDPOINT": str(second.config.endpoint_file)}
        done = run(["attach", job_id], env)
        assert done.returncode == 0, done.stderr
        assert f"the daemon restarted while job {job_id} ran: it runs again from its start" in done.stderr
    finally:
        second.stop()
