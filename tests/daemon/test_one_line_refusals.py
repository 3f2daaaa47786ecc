"""Bad input is one `error:` line with the right exit code and gRPC status, never a traceback (issue 23 item 7):
NUL bytes in a job's paths and texts, model names the hub would refuse, take folders that cannot be made, and
numbers past what the wire or a byte count holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest

from v2vz.api.errors import ERROR_METADATA_KEY, InvalidArgument
from v2vz.api.job import EditJob
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.client import Client

from ..conftest import V2VZ
from ..daemon_kit import BIKES, connect, request, watch

EDIT = ["-s", "people riding bikes on a road", "-p", "people riding horses on a road", "--frames", "2"]
BAD_HUB_IDS = ("not valid!!", "org/..", "a" * 97)


def run(args: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([V2VZ, *args], env=env, capture_output=True, text=True, timeout=timeout)


def one_error(result: subprocess.CompletedProcess, *words: str, code: int = 2) -> str:
    """The command failed with `code` and said so in exactly one `error:` line holding `words`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def refusal(stub, md, submit: pb.SubmitEditRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitEdit(submit, metadata=md, timeout=30)
    return refused.value


def error_name(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(ERROR_METADATA_KEY)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("output", "/tmp/v2vz-r3/out\x00.mp4", "output"),
        ("out_frames_dir", "/tmp/v2vz-r3/fr\x00ames", "out frames dir"),
        ("output", "/tmp/v2vz-r3/shot\x00_%04d.exr", "output"),  # a frame pattern
        ("source_path", f"{BIKES}\x00.mp4", "source"),
        ("prompt", "horses\x00 on a road", "prompt"),
        ("source_prompt", "bikes\x00", "source prompt"),
        ("model", "ti\x00ny", "model"),
        ("codec", "h2\x0064", "codec"),
    ],
)
def test_a_nul_byte_in_any_path_or_text_of_a_job_is_an_invalid_argument(root, daemon, field, value, named):
    stub, md = connect(daemon)
    error = refusal(stub, md, request(root, **{field: value}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error_name(error) == "InvalidArgument"
    assert error.details() == f"the {named} has a NUL byte in it: remove it"
    assert not stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs  # nothing recorded
    assert "Traceback" not in daemon.log_file.read_text() and "submitted" not in daemon.log_file.read_text()


def test_a_nul_byte_is_refused_by_the_job_itself_for_local_edits_and_watch_sidecars(tmp_path):
    from v2vz.watchfolder.settings import resolve_job

    job = EditJob(BIKES, "horses", "bikes", output=tmp_path / "out.mp4")
    job.validate()
    for changed in ({"prompt": "hor\x00ses"}, {"output": tmp_path / "o\x00.mp4"}, {"model": "t\x00iny"}):
        with pytest.raises(InvalidArgument, match="has a NUL byte in it"):
            EditJob(**{**job.__dict__, **changed}).validate()
    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    clip.write_bytes(BIKES.read_bytes())
    clip.with_suffix(".toml").write_text('prompt = "horses\\u0000"\nsource_prompt = "bikes"\n')
    with pytest.raises(InvalidArgument, match="the prompt has a NUL byte in it"):
        resolve_job(clip, tmp_path / "out")
    clip.with_suffix(".toml").write_text(f'prompt = "horses"\nsource_prompt = "bikes"\ncodec = "{"h" * 100_000}"\n')
    with pytest.raises(InvalidArgument, match=r"^the codec is 100000 characters long; at most 100$"):
        resolve_job(clip, tmp_path / "out")


@pytest.mark.parametrize("model", BAD_HUB_IDS)
def test_a_model_name_the_hub_would_refuse_is_one_line_through_the_daemon(root, daemon, model):
    stub, md = connect(daemon)
    error = refusal(stub, md, request(root, model=model))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error_name(error) == "ModelUnavailable"
    assert f"model {model!r} is not available" in error.details() and "not a valid hub id" in error.details()
    assert "HFValidationError" not in error.details() and "\n" not in error.details()


def test_a_model_name_the_hub_would_refuse_is_one_line_for_serve_local_and_pull(tmp_path):
    env = {"V2VZ_ENDPOINT": str(tmp_path / "run" / "endpoint.json")}
    for model in BAD_HUB_IDS:
        served = run(["serve", "--model", model, "--state-dir", str(tmp_path / "state")], env)
        one_error(served, f"model {model!r} is not available", "not a valid hub id")
        local = run(["edit", str(BIKES), *EDIT, "--local", "--model", model, "--out", str(tmp_path / "x.mp4")], env)
        one_error(local, f"model {model!r} is not available", "not a valid hub id")
    one_error(run(["models", "pull", "org/.."], env), "'org/..' is not a hub id")
    assert not (tmp_path / "run").exists() and not (tmp_path / "x.mp4").exists()


def test_a_take_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"V2VZ_ENDPOINT": str(tmp_path / "endpoint.json")}
    for folder in ("/proc/v2vz-takes", blocker / "takes"):  # a file system that makes no folders; under a file
        given = run(["edit", str(BIKES), *EDIT, "--local", "--model", "tiny", "--out-dir", str(folder)], env)
        one_error(given, str(folder))
        takes_env = {**env, "V2VZ_TAKES_DIR": str(folder)}
        from_env = run(["edit", str(BIKES), *EDIT, "--local", "--model", "tiny"], takes_env)
        one_error(from_env, str(folder))
    assert blocker.read_text() == "not a folder"


def test_numbers_past_the_wire_or_a_byte_count_are_one_line(root, daemon, tmp_path):
    env = {"V2VZ_ENDPOINT": str(daemon.config.endpoint_file)}
    stub, md = connect(daemon)
    job_id = stub.SubmitEdit(request(root / "out", options={"steps": "2"}), metadata=md).job_id
    assert watch(stub, md, job_id)[-1].WhichOneof("kind") == "done"
    attached = run(["attach", job_id, "--after", "99999999999999999999"], env)  # past the end: the outcome again
    assert attached.returncode == 0 and "Traceback" not in attached.stderr, attached.stderr
    assert attached.stderr.strip().splitlines()[-1].startswith("wrote ")
    with Client(daemon_endpoint(daemon)) as client:
        assert [event.WhichOneof("kind") for event in client.follow(job_id, after=2**80)] == ["done"]
        assert [job.job_id for job in client.jobs(limit=2**40)] == [job_id]
    other = {"V2VZ_ENDPOINT": str(tmp_path / "run" / "endpoint.json")}
    serve = ["serve", "--model", "tiny", "--device", "cpu", "--state-dir", str(tmp_path / "state")]
    one_error(run([*serve, "--cache-size", "inf"], other), "--cache-size must be between 0 and")
    one_error(run([*serve, "--cache-size", "1e300"], other), "--cache-size must be between 0 and")
    one_error(run([*serve, "--workers", "1", "--worker-threads", "100000"], other), "--worker-threads", "100000")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_error(run([*serve[:-1], str(blocker / "state")], other), "cannot use", "state folder")
    assert not (tmp_path / "run").exists()


def daemon_endpoint(daemon):
    from v2vz.api.endpoint import read_endpoint

    return read_endpoint(daemon.config.endpoint_file)


def test_the_take_folder_error_names_its_cause(tmp_path):
    from v2vz.api.errors import OutputUnwritable
    from v2vz.api.takes import reserve_take

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputUnwritable, match=r"cannot make the take folder .*a-file/takes"):
        reserve_take(blocker / "takes" / "deeper", "clip", "mp4", False)
    assert Path(blocker).read_text() == ""
