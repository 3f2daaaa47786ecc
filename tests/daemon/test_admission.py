"""Admission without gRPC: `admit(request, config, journal)` takes or refuses a SubmitEdit request on its own.

Every refusal comes before anything is recorded or written; a taken request comes back as the resolved job.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from v2vz.api.errors import InvalidArgument, MediaNotFound, OutputExists, PathNotAllowed
from v2vz_daemon.admission import admit
from v2vz_daemon.config import DaemonConfig
from v2vz_daemon.journal import Journal

from ..daemon_kit import BIKES, request


@pytest.fixture()
def config(root: Path) -> DaemonConfig:
    return DaemonConfig(model="tiny", cache_dir=root / "cache", media_roots=(BIKES.parent, root / "media"))


@pytest.fixture()
def journal(config: DaemonConfig):
    config.state_dir.mkdir(parents=True)
    journal = Journal(config.state_dir / "journal.sqlite")
    yield journal
    journal.close()


def test_a_local_request_becomes_the_resolved_job_and_nothing_is_recorded(root, config, journal):
    job = admit(request(root), config, journal)
    assert (job.source, job.start, job.frames, job.model) == (BIKES, 10, 3, "tiny")
    assert job.output == root / "out.mp4" and job.out_frames_dir == root / "frames"
    assert journal.list(10) == [] and not (root / "out.mp4").exists()


def test_frames_0_becomes_the_clips_real_count_and_a_range_past_its_end_is_refused(root, config, journal):
    from v2vz_engine.media import probe

    length = probe(BIKES).frame_count
    assert admit(request(root, frames=0), config, journal).frames == length - 10
    with pytest.raises(InvalidArgument, match=str(length)):
        admit(request(root, start=length - 1, frames=3), config, journal)


@pytest.mark.parametrize(
    ("changes", "remote", "error", "words"),
    [
        ({"source_path": "clips/bikes.mp4"}, False, InvalidArgument, "must be absolute"),
        ({"media_id": "0123456789abcdef01234567.mp4"}, False, MediaNotFound, "upload it with UploadMedia"),
        ({"output": "out.mp4"}, False, InvalidArgument, "output 'out.mp4' must be an absolute path"),
        ({"options": {"stepz": "3"}}, False, InvalidArgument, "did you mean `steps`"),
        ({"model": "nowhere/at-all"}, False, Exception, "nowhere/at-all"),
        ({"source_path": "/etc/hostname"}, True, PathNotAllowed, "source"),
        ({"model": "tiny-other"}, True, PathNotAllowed, "is not one this daemon offers remote clients: tiny"),
    ],
)
def test_a_bad_request_is_refused_with_its_reason(root, config, journal, changes, remote, error, words):
    with pytest.raises(error) as refused:
        admit(request(root / "media" if remote else root, **changes), config, journal, remote=remote)
    assert words in str(refused.value)
    assert journal.list(10) == []


def test_a_remote_client_is_confined_to_the_media_roots(root, config, journal):
    inside = request(root / "media")
    assert admit(inside, config, journal, remote=True).output == root / "media" / "out.mp4"
    with pytest.raises(PathNotAllowed, match="output"):
        admit(request(root / "elsewhere"), config, journal, remote=True)
    assert admit(request(root / "elsewhere"), config, journal).output == root / "elsewhere" / "out.mp4"  # local


def test_streamed_frames_without_outputs_go_to_the_state_folder_even_for_a_remote_client(root, config, journal):
    streaming = request(root, output="", out_frames_dir="", stream_frames=True)
    job = admit(streaming, config, journal, remote=True)
    assert job.out_frames_dir.parent == config.state_dir / "frames" and job.output is None
    assert streaming.out_frames_dir == str(job.out_frames_dir)  # the request says where, for the journal


def test_two_jobs_in_flight_never_write_one_file(root, config, journal):
    first = admit(request(root), config, journal)
    job_id = journal.submit(first, client="test", stream_frames=False).job_id
    with pytest.raises(OutputExists, match=f"job {job_id} \\(queued\\) writes .*out.mp4 already"):
        admit(request(root, out_frames_dir=str(root / "other")), config, journal)
    assert isinstance(admit(request(root / "b"), config, journal), type(first))


def test_an_uploaded_media_id_names_a_file_in_the_uploads_folder(root, config, journal):
    uploads = config.state_dir / "uploads"
    uploads.mkdir()
    (uploads / "0123456789abcdef01234567.mp4").write_bytes(BIKES.read_bytes())
    upload = request(root / "media", media_id="../../0123456789abcdef01234567.mp4")
    job = admit(upload, config, journal, remote=True)
    assert job.source == uploads / "0123456789abcdef01234567.mp4"  # the id's own name only: never ../..


def test_admission_checks_the_job_once(root, config, journal, monkeypatch):
    """`job_from_request` checks the job; resolving it against its clip does not check it again (one per side)."""
    from v2vz.api.job import EditJob

    calls = []
    validate = EditJob.validate

    def counting(job: EditJob) -> None:
        calls.append(job.source)
        validate(job)

    monkeypatch.setattr(EditJob, "validate", counting)
    admit(request(root), config, journal)
    assert calls == [BIKES]


def test_a_matte_is_admitted_with_its_digest_and_confined_like_the_source(root, config, journal):
    """The matte is read by the daemon: absolute, inside --media-root for a remote client, checked against the
    range and recorded with its digest; a resampled one is a note of the reply."""
    import hashlib

    from PIL import Image

    from v2vz_daemon.admission import submit_notes

    (root / "media").mkdir()
    matte = root / "media" / "matte.png"
    Image.new("L", (320, 136), 255).save(matte)
    options = {"edit_only": "bikes"}
    local = request(root / "media", matte=str(matte), mask_dir=str(root / "media" / "masks"), options=options)
    job = admit(local, config, journal, remote=True)
    assert job.matte == matte and job.matte_digest == hashlib.sha256(matte.read_bytes()).hexdigest()
    assert any("is 320x136: it is resampled to the source's" in note for note in submit_notes(job))
    with pytest.raises(PathNotAllowed, match="matte"):
        admit(request(root / "media", matte="/etc/hostname"), config, journal, remote=True)
    with pytest.raises(PathNotAllowed, match="mask folder"):
        admit(request(root / "media", matte=str(matte), mask_dir="/tmp/elsewhere"), config, journal, remote=True)
    with pytest.raises(InvalidArgument, match="matte 'm.png' must be an absolute path"):
        admit(request(root, matte="m.png"), config, journal)
    assert journal.list(10) == []
