"""No edit ever replaces its source: `--out` naming the source under any spelling, or a frames folder holding it, is
refused at once (INVALID_ARGUMENT / exit 2) and the source stays byte for byte as it was."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
import pytest

from v2vz.api.v1 import editor_pb2 as pb

from ..conftest import CLIPS, V2VZ
from ..daemon_kit import connect, request


@pytest.fixture
def clip(root: Path) -> Path:
    source = root / "same.mp4"
    source.write_bytes((CLIPS / "bikes.mp4").read_bytes())
    return source


def spellings(clip: Path) -> dict[str, str]:
    (clip.parent / "link.mp4").symlink_to(clip)
    os.link(clip, clip.parent / "hard.mp4")
    (clip.parent / "sub").mkdir()
    return {
        "the same path": str(clip),
        "a path through ..": str(clip.parent / "sub" / ".." / clip.name),
        "a symlink": str(clip.parent / "link.mp4"),
        "a hard link": str(clip.parent / "hard.mp4"),
    }


def test_the_daemon_refuses_an_output_that_is_the_source(daemon, root, clip):
    stub, md = connect(daemon)
    before = clip.read_bytes()
    for spelling, path in spellings(clip).items():
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitEdit(request(root, source_path=str(clip), output=path, out_frames_dir=""), metadata=md)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, spelling
        assert "is the source" in refused.value.details() and "never replaces its source" in refused.value.details()
    for folder in (root, root / "sub" / ".."):  # a frames folder that holds the source
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitEdit(request(root, source_path=str(clip), output="", out_frames_dir=str(folder)), metadata=md)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "holds the source" in refused.value.details()
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == []
    assert clip.read_bytes() == before


def test_an_image_sequence_is_not_overwritten_by_its_own_frames(daemon, root):
    from v2vz_engine import media

    frames = root / "shot"
    frames.mkdir()
    clip, _ = media.read_frames(CLIPS / "bikes.mp4", 0, 2)
    media.write_png_frames(clip, frames)  # frame_000000.png, frame_000001.png: the names an edit would write
    stub, md = connect(daemon)
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitEdit(
            request(root, source_path=str(frames), start=0, frames=2, output="", out_frames_dir=str(frames)),
            metadata=md,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "holds the source" in refused.value.details()


def test_the_cli_refuses_it_locally_and_through_the_daemon_before_any_work(daemon, root, clip, model_cache):
    before = clip.read_bytes()
    args = [V2VZ, "edit", "same.mp4", "-p", "a jeep", "-s", "bikes", "--out", "same.mp4", "--steps", "1"]
    env = {**os.environ, "V2VZ_ENDPOINT": str(daemon.config.endpoint_file)}
    for extra in (["--local", "--model", "tiny", "--cache-dir", str(model_cache)], []):
        done = subprocess.run([*args, *extra], cwd=root, capture_output=True, text=True, env=env, timeout=60)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: the output ") and "is the source" in lines[0], lines
    stub, md = connect(daemon)
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == []
    assert clip.read_bytes() == before
