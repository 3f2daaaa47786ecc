"""LoRAs in the contract: `PATH[:SCALE]` parsing, the job's checks, and the LoRA set with its digests on the wire,
in records (journal rows, sidecars), in `v2vz jobs`, in watch folder sidecars and in the hosts' flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import MAX_LORAS, EditJob, Lora
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.wire import job_from_request, job_to_request, summary_to_dict
from v2vz.cli.jobs import job_block
from v2vz.watchfolder.settings import check_settings, resolve_job
from v2vz_daemon.journal import JobRecord
from v2vz_daemon.wire import job_summary

from ..plugins.test_host_client import host  # noqa: F401 - plugins/host/v2vz_host.py loaded by its path

DIGEST = "ab" * 32


def job(*loras: Lora) -> EditJob:
    return EditJob(Path("/clips/a.mp4"), "a jeep", "a car", output=Path("/o.mp4"), loras=loras)


@pytest.mark.parametrize(
    ("text", "path", "scale"),
    [
        ("style.safetensors", "style.safetensors", 1.0),
        ("style.safetensors:0.6", "style.safetensors", 0.6),
        ("/loras/ink.safetensors:-1.5", "/loras/ink.safetensors", -1.5),
        ("style.safetensors:0", "style.safetensors", 0.0),
        ("C:\\loras\\x.safetensors", "C:\\loras\\x.safetensors", 1.0),  # a Windows drive's colon is no scale
        ("C:\\loras\\x.safetensors:.5", "C:\\loras\\x.safetensors", 0.5),
        ("/odd:name.safetensors", "/odd:name.safetensors", 1.0),
    ],
)
def test_a_lora_argument_is_a_path_with_an_optional_trailing_scale(text, path, scale):
    assert Lora.parse(text) == Lora(Path(path), scale)


@pytest.mark.parametrize(
    ("loras", "message"),
    [
        ((Lora(Path("s.safetensors"), 11.0),), "must be between -10.0 and 10.0"),
        ((Lora(Path("s.safetensors"), float("nan")),), "must be a number"),
        ((Lora(Path("")),), "is not a file name"),
        ((Lora(Path("s\x00.safetensors")),), "is not a file name"),
        (tuple(Lora(Path(f"{n}.safetensors")) for n in range(MAX_LORAS + 1)), f"at most {MAX_LORAS}"),
    ],
)
def test_bad_lora_fields_are_refused_in_one_line(loras, message):
    with pytest.raises(InvalidArgument, match=message):
        job(*loras).validate()


def test_the_lora_set_round_trips_through_records_and_the_wire_with_its_digests():
    styled = job(Lora(Path("/loras/ink.safetensors"), 0.8, DIGEST), Lora(Path("/loras/grain.safetensors"), 0.25))
    record = styled.to_dict()
    assert record["loras"] == [
        {"path": "/loras/ink.safetensors", "scale": 0.8, "digest": DIGEST},
        {"path": "/loras/grain.safetensors", "scale": 0.25, "digest": None},
    ]
    assert EditJob.from_dict(record) == styled
    assert EditJob.from_dict({k: v for k, v in record.items() if k != "loras"}).loras == ()  # older records
    request = job_to_request(styled)
    assert [(lora.path, lora.scale, lora.digest) for lora in request.loras] == [
        ("/loras/ink.safetensors", 0.8, DIGEST),
        ("/loras/grain.safetensors", 0.25, ""),
    ]
    assert job_from_request(pb.SubmitEditRequest.FromString(request.SerializeToString()), "tiny").loras == styled.loras
    assert Path(job(Lora(Path("rel.safetensors"))).with_absolute_paths().loras[0].path).is_absolute()


def test_a_request_with_too_many_or_too_long_loras_is_refused():
    request = job_to_request(job(Lora(Path("/a.safetensors"))))
    request.loras.add(path="/" + "x" * 5000)
    with pytest.raises(InvalidArgument, match="a LoRA's path is at most"):
        job_from_request(request, "tiny")


def test_jobs_list_and_json_show_each_lora_with_its_digest():
    styled = job(Lora(Path("/loras/ink.safetensors"), 0.8, DIGEST))
    record = JobRecord("j1", "done", styled, 1.0, 2.0, 3.0, 1, "", "v2vz-cli", False)
    summary = job_summary(record)
    assert summary_to_dict(summary)["loras"] == [{"path": "/loras/ink.safetensors", "scale": 0.8, "digest": DIGEST}]
    assert f"    loras: /loras/ink.safetensors:0.8 (sha256 {DIGEST[:12]})" in job_block(summary)


def test_a_watch_folder_sidecar_names_loras_relative_to_the_clip(tmp_path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"")
    (tmp_path / "shot.toml").write_text(
        'prompt = "a jeep"\nsource_prompt = "a car"\n'
        'loras = ["ink.safetensors:0.5", {path = "/abs/grain.safetensors", scale = 2}]\n'
    )
    resolved = resolve_job(clip, tmp_path / "out")
    assert resolved.loras == (
        Lora(tmp_path / "ink.safetensors", 0.5),
        Lora(Path("/abs/grain.safetensors"), 2.0),
    )
    assert check_settings("v2vz.toml", {"loras": "one.safetensors"})["loras"] == (Lora(Path("one.safetensors")),)
    with pytest.raises(InvalidArgument, match="loras must be a list"):
        check_settings("shot.toml", {"loras": [3]})


def test_a_host_passes_its_loras_as_lora_flags(host):  # noqa: F811
    edit = host.LocalEdit(loras=["/loras/ink.safetensors:0.5", "/loras/grain.safetensors"])
    assert edit.args() == ["--lora", "/loras/ink.safetensors:0.5", "--lora", "/loras/grain.safetensors"]
    assert not edit.local and edit.problem() == ""
    assert host.LocalEdit(loras=[" "]).problem() == "a LoRA needs a path: PATH or PATH:SCALE"


def test_the_daemon_admits_a_lora_with_its_digest_and_refuses_a_bad_or_unconfined_one(root):
    import hashlib

    from safetensors.torch import save_file
    from torch import zeros

    from v2vz.api.errors import PathNotAllowed
    from v2vz_daemon.admission import admit
    from v2vz_daemon.config import DaemonConfig
    from v2vz_daemon.journal import Journal

    from ..daemon_kit import BIKES, request

    config = DaemonConfig(model="tiny", cache_dir=root / "cache", media_roots=(BIKES.parent, root / "media"))
    config.state_dir.mkdir(parents=True)
    journal = Journal(config.state_dir / "journal.sqlite")
    try:
        lora = root / "ink.safetensors"
        save_file({"unet.a.to_q.lora_A.weight": zeros(2, 2), "unet.a.to_q.lora_B.weight": zeros(2, 2)}, str(lora))
        job = admit(request(root, loras=[pb.Lora(path=str(lora), scale=0.5, digest="forged")]), config, journal)
        assert job.loras == (Lora(lora, 0.5, hashlib.sha256(lora.read_bytes()).hexdigest()),)  # never the client's
        with pytest.raises(InvalidArgument, match="must be an absolute path"):
            admit(request(root, loras=[pb.Lora(path="ink.safetensors", scale=1)]), config, journal)
        with pytest.raises(InvalidArgument, match="does not exist"):
            admit(request(root, loras=[pb.Lora(path=str(root / "gone.safetensors"), scale=1)]), config, journal)
        with pytest.raises(PathNotAllowed, match="the LoRA"):
            inside = {"output": str(root / "media" / "o.mp4"), "out_frames_dir": str(root / "media" / "f")}
            admit(request(root, **inside, loras=[pb.Lora(path=str(lora), scale=1)]), config, journal, remote=True)
        assert journal.list(10) == []
    finally:
        journal.close()
