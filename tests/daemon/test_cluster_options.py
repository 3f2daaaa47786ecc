"""`v2vz serve`'s cluster options refuse in one line, at once and before Ray starts: a token file others can read,
one that is not a regular file (a FIFO would hang, /dev/zero never ends), more workers than the machine has, and a
token file given without the cluster it is for."""

from __future__ import annotations

import os
import secrets
import threading

import pytest

from v2vz.api.errors import ClusterUnavailable
from v2vz_daemon.cluster import connect

from .test_cluster_cli import serve


def one_line_refusal(code: int, stderr: str, message: str) -> None:
    assert code == 2, stderr
    assert stderr.startswith("error: ") and len(stderr.splitlines()) == 1, stderr
    assert message in stderr, stderr


def test_a_token_file_others_can_read_is_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o644)
    code, stderr, seconds = serve("--ray", "127.0.0.1:1", "--ray-token-file", str(token), tmp_path=tmp_path)
    one_line_refusal(code, stderr, f"the Ray token file {token} is open to others (mode 644): chmod 600 {token}")
    assert not (tmp_path / "state" / "journal.sqlite").exists() and seconds < 20


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_token_file_that_is_not_a_regular_file_is_refused_at_once(kind, tmp_path):
    """A FIFO nobody writes to used to hang `serve` for ever; /dev/zero grew its memory without end."""
    path = {"fifo": tmp_path / "token", "device": "/dev/zero", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    code, stderr, seconds = serve("--ray", "127.0.0.1:1", "--ray-token-file", str(path), tmp_path=tmp_path)
    one_line_refusal(code, stderr, f"the Ray token file {path} is not a regular file")
    assert seconds < 20


def test_a_token_file_of_more_than_a_few_kilobytes_is_refused_unread(tmp_path):
    big = tmp_path / "token"
    big.write_bytes(b"a" * (64 * 1024 * 1024))
    big.chmod(0o600)
    with pytest.raises(ClusterUnavailable, match=r"is 67108864 bytes: a token is one line"):
        connect.read_token(big)


def test_read_token_never_blocks_on_a_fifo(tmp_path):
    """The reader of a FIFO's token returns (refused) even though no writer ever opens the FIFO."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo, 0o600)
    refused: list[str] = []

    def read() -> None:
        try:
            connect.read_token(fifo)
        except ClusterUnavailable as error:
            refused.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "read_token hung on a FIFO"
    assert refused == [f"the Ray token file {fifo} is not a regular file"]


def test_a_private_token_file_is_read(tmp_path):
    token = tmp_path / "token"
    token.write_text(" abc123 \n")
    token.chmod(0o600)
    assert connect.read_token(token) == "abc123"


def test_more_cpu_workers_than_cpus_are_refused(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    code, stderr, seconds = serve("--workers", str(cpus + 1), tmp_path=tmp_path)  # with --device cpu
    plural = "s" if cpus != 1 else ""
    one_line_refusal(
        code, stderr, f"--workers {cpus + 1}, but this machine has {cpus} CPU{plural}: at most one CPU worker per CPU"
    )
    assert not (tmp_path / "state" / "journal.sqlite").exists() and seconds < 20


def test_a_token_file_with_a_local_cluster_is_refused(tmp_path):
    """A local cluster makes its own token: a --ray-token-file beside --workers was silently ignored."""
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    code, stderr, _ = serve("--workers", "1", "--ray-token-file", str(token), tmp_path=tmp_path)
    one_line_refusal(code, stderr, "--ray-token-file goes with --ray ADDRESS")
    assert not (tmp_path / "state" / "journal.sqlite").exists()
