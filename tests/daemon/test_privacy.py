"""What is the user's stays the user's: the daemon makes private only the folders it creates, never one it does
not own; its journal, cache and uploads are unreadable by another local user; outputs follow the user's umask."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from v2vz.api.errors import InvalidArgument
from v2vz.api.v1 import editor_pb2 as pb

from ..daemon_kit import connect, make_daemon, request, watch

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def readable_by_nobody(path: Path) -> bool:
    """Whether another local user (uid/gid 65534) can open the file for reading."""

    def become_nobody() -> None:
        os.setgid(NOBODY)
        os.setgroups([])
        os.setuid(NOBODY)

    command = ["/bin/sh", "-c", 'exec 3< "$1"', "sh", str(path)]  # opens the file, or exits non-zero
    done = subprocess.run(command, preexec_fn=become_nobody, stderr=subprocess.DEVNULL, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("folder_mode", [0o755, 0o1777, 0o750])
def test_a_socket_folder_open_to_others_is_refused_and_left_as_it_was(root, pipeline, folder_mode):
    shared = root / "shared"
    shared.mkdir()
    os.chmod(shared, folder_mode)
    for config in ({"listen": f"unix:{shared / 'x.sock'}"}, {"endpoint_file": shared / "endpoint.json"}):
        server = make_daemon(root, lambda: pipeline, **config)
        with pytest.raises(InvalidArgument) as refused:
            server.start()
        server.stop()
        assert f"{shared} is open to others (mode {folder_mode:o})" in str(refused.value)
        assert "only you can open" in str(refused.value)
        assert mode(shared) == folder_mode and not list(shared.iterdir())


def test_folders_the_daemon_creates_are_private(root, pipeline):
    server = make_daemon(root, lambda: pipeline, listen=f"unix:{root / 'new' / 'sock' / 'daemon.sock'}")
    server.start()
    try:
        assert mode(root / "new" / "sock") == 0o700 and mode(root / "run") == 0o700
        assert mode(root / "run" / "endpoint.json") == 0o600
    finally:
        server.stop()


def test_the_journal_cache_and_uploads_are_private_to_the_user(root, daemon):
    stub, md = connect(daemon)
    upload = stub.UploadMedia(iter([pb.MediaChunk(filename="clip.mp4", data=b"\0" * 100)]), metadata=md)
    job_id = stub.SubmitEdit(request(root / "out", options={"steps": "2"}), metadata=md).job_id
    assert watch(stub, md, job_id)[-1].WhichOneof("kind") == "done"
    state = daemon.config.state_dir
    files = [state / "journal.sqlite", state / "journal.sqlite-wal", state / "journal.sqlite-shm"]
    files += [state / "uploads" / upload.media_id, *sorted((state / "inversions").glob("??/*.inv"))]
    assert len(files) == 5 and all(path.exists() for path in files), files  # journal (3), upload, inversion
    for folder in (state, state / "inversions", state / "uploads"):
        assert mode(folder) == 0o700, folder
    for path in files:
        assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
        assert not readable_by_nobody(path), path
    for folder in (root, root / "cache", state):  # even with every folder on the way open (an older daemon's),
        os.chmod(folder, 0o755)  # the files themselves are closed
    assert not any(readable_by_nobody(path) for path in files)
    (state / "open.txt").write_text("x")
    os.chmod(state / "open.txt", 0o644)
    assert readable_by_nobody(state / "open.txt")  # the probe can tell: another user reads an open file there
    daemon.stop()
    make_daemon(root, lambda: None)  # the next daemon closes the state folder again
    assert mode(state) == 0o700


def test_outputs_follow_the_umask_and_an_overwritten_output_keeps_its_mode(root, daemon):
    stub, md = connect(daemon)
    previous = os.umask(0o022)
    try:
        job_id = stub.SubmitEdit(request(root / "a", options={"steps": "2"}), metadata=md).job_id
        done = watch(stub, md, job_id)[-1].done
        assert mode(Path(done.output)) == 0o644 and {mode(Path(p)) for p in done.frame_paths} == {0o644}
        assert readable_by_nobody(Path(done.output)) is (mode(root) & 0o005 == 0o005)
        os.chmod(done.output, 0o640)
        again = stub.SubmitEdit(request(root / "a", options={"steps": "2"}, overwrite=True), metadata=md).job_id
        assert mode(Path(watch(stub, md, again)[-1].done.output)) == 0o640
    finally:
        os.umask(previous)
