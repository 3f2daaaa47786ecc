"""`v2vz serve`'s cluster options refuse what cannot work at once, in one line, before torch or Ray is started."""

from __future__ import annotations

import subprocess
import time

import pytest

from v2vz.api.errors import ClusterUnavailable
from v2vz_daemon.cluster import connect

from ..conftest import V2VZ


def serve(*args: str, tmp_path) -> tuple[int, str, float]:
    began = time.monotonic()
    result = subprocess.run(
        [V2VZ, "serve", "--model", "tiny", "--device", "cpu", "--state-dir", str(tmp_path / "state"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "V2VZ_ENDPOINT": str(tmp_path / "endpoint.json")},
    )
    return result.returncode, result.stderr.strip(), time.monotonic() - began


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ray", "10.0.0.5:6379"), "joining a Ray cluster needs its token: --ray-token-file FILE"),
        (("--ray-token-file", "/etc/hostname"), "--ray-token-file goes with --ray ADDRESS"),
        (("--ray-node-ip", "127.0.0.2"), "--ray-node-ip goes with --workers N or --ray ADDRESS"),
        (("--workers", "0"), "--workers must be a number of workers (1 or more) or auto, got '0'"),
        (("--workers", "many"), "--workers must be a number of workers (1 or more) or auto, got 'many'"),
        (("--workers", "2", "--worker-threads", "0"), "--worker-threads must be 1 or more, got 0"),
        (("--workers", "2", "--worker-retries", "-1"), "--worker-retries must be 0 or more, got -1"),
        (("--ray", "h:1", "--ray-token-file", "/nonexistent/token"), "cannot read the Ray token file /nonexistent/"),
        (("--workers", "2", "--device", "mps"), "a cluster's workers run on auto, cpu or cuda, not 'mps'"),
    ],
)
def test_bad_cluster_options_are_refused_in_one_line(args, message, tmp_path):
    code, stderr, seconds = serve(*args, tmp_path=tmp_path)
    assert code == 2, stderr
    assert stderr.startswith("error: ") and message in stderr and len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "state").exists()  # refused before the daemon made anything
    assert seconds < 20


def test_an_empty_token_file_is_refused(tmp_path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    empty.chmod(0o600)
    code, stderr, _ = serve("--ray", "h:1", "--ray-token-file", str(empty), tmp_path=tmp_path)
    assert code == 2 and f"the Ray token file {empty} is empty" in stderr


def test_without_the_cluster_extra_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(connect.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ClusterUnavailable, match=r"Ray is not installed: pip install 'v2vz\[cluster\]'"):
        connect.require_ray()
