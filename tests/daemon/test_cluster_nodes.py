"""`v2vz serve --ray ADDRESS`: the daemon joins a two-node Ray cluster on loopback addresses (127.0.0.2 is the head,
127.0.0.3 a second node, both started with `ray start` and a token), and a job survives the second node's death.

A node's death is every process of it killed at once (its raylet and the workers it started), as when a machine
loses power: the window that ran there runs again on the other node and the job completes, each frame once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from v2vz.api.job import EditJob, EditOptions

from ..cluster_kit import process_tree
from ..conftest import CLIPS, V2VZ, serve_tiny

RAY = str(Path(sys.executable).with_name("ray"))
HEAD, SECOND = "127.0.0.2", "127.0.0.3"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HEAD, 0))
        return probe.getsockname()[1]


def node_processes(folder: Path) -> dict[str, set[int]]:
    """The raylets of our cluster by node address (found by our temp folder in their command line)."""
    raylets: dict[str, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(folder) in command and "raylet/raylet" in command:
                    for address in (HEAD, SECOND):
                        if f"--node_ip_address={address}" in command:
                            raylets.setdefault(address, set()).add(int(entry.name))
    return raylets


def kill_everything_of(folder: Path) -> None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture(scope="module")
def two_nodes():
    """A head on 127.0.0.2 and a node on 127.0.0.3, one CPU each, token authentication; (address, token file)."""
    folder = Path(tempfile.mkdtemp(prefix="v2vz-ray-", dir="/tmp"))
    token_file = folder / "token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)  # a token file others can read is refused
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token_file.read_text()}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    port = free_port()
    common = ["--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats", "--temp-dir", str(folder)]
    try:
        subprocess.run(
            [RAY, "start", "--head", "--node-ip-address", HEAD, "--port", str(port), "--include-dashboard", "false"]
            + common,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [RAY, "start", "--address", f"{HEAD}:{port}", "--node-ip-address", SECOND] + common,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"{HEAD}:{port}", token_file, folder
    finally:
        kill_everything_of(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_node_killed_mid_job_its_window_runs_on_the_other_and_the_job_completes(two_nodes, model_cache, tmp_path):
    address, token_file, folder = two_nodes
    from v2vz.api.endpoint import read_endpoint
    from v2vz.client import Client

    extra = ("--ray", address, "--ray-token-file", str(token_file), "--ray-node-ip", HEAD, "--workers", "2")
    with (
        serve_tiny(model_cache, "v2vz-cn-", extra=extra, ready_within=180) as (env, _root, _process),
        Client(read_endpoint(Path(env["V2VZ_ENDPOINT"])), timeout=30) as client,
    ):
        nodes = {w.node for w in client.info().workers}
        assert nodes == {HEAD, SECOND}, client.info().workers  # one worker on each node
        options = EditOptions(steps=8, size=48, window=8, window_links="anchored")
        job = EditJob(
            source=CLIPS / "bikes.mp4",
            prompt="a fox in a meadow",
            source_prompt="a rabbit in a meadow",
            frames=32,
            options=options,
            out_frames_dir=tmp_path / "frames",
        )
        job_id = client.submit(job).job_id
        killed: list[set[int]] = []
        events = []
        for event in client.follow(job_id):
            events.append(event)
            if killed or event.WhichOneof("kind") != "progress" or event.progress.stage != "edit":
                continue
            busy = [w for w in client.info().workers if w.job_id == job_id and w.window > 0]
            if any(w.node == SECOND for w in busy):
                (raylet,) = node_processes(folder)[SECOND]
                doomed = process_tree(raylet)  # the node's raylet and every worker it started
                for pid in doomed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed.append(doomed)
        assert killed, "the second node never got a window"
        assert events[-1].WhichOneof("kind") == "done", events[-1]
        frames = [e.frame.index for e in events if e.WhichOneof("kind") == "frame"]
        assert frames == list(range(32))
        retries = [e.progress for e in events if e.WhichOneof("kind") == "progress" and e.progress.stage == "retry"]
        assert len(retries) == 1 and f"on {SECOND}) died" in retries[0].reason, retries
        assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 32
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {w.name: w.state for w in client.info().workers}
            if "restarting" in states.values():
                break
            time.sleep(0.2)
        assert "restarting" in states.values(), states  # the dead node's worker waits for room elsewhere


def test_joining_with_a_wrong_token_is_refused_in_one_line(two_nodes, model_cache, tmp_path):
    """A token that is not the cluster's: `v2vz serve --ray` exits 2 with one line and leaves nothing behind."""
    address, _, _ = two_nodes
    wrong = tmp_path / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    wrong.chmod(0o600)
    state = tmp_path / "state"
    began = time.monotonic()
    result = subprocess.run(
        [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(model_cache), "--device", "cpu"]
        + ["--state-dir", str(state), "--ray", address, "--ray-token-file", str(wrong), "--ray-node-ip", HEAD],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "V2VZ_ENDPOINT": str(tmp_path / "endpoint.json")},
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0] == f"error: the Ray cluster at {address} refused the token in {wrong}: copy it from the head " + (
        "(ray get-auth-token)"
    )
    assert not (tmp_path / "endpoint.json").exists() and not (state / "journal.sqlite").exists()
    assert time.monotonic() - began < 20  # one call, not Ray's minute of retries


def test_an_address_where_nothing_listens_is_refused_at_once(two_nodes, model_cache, tmp_path):
    _, token_file, _ = two_nodes
    address = f"{HEAD}:{free_port()}"
    result = subprocess.run(
        [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(model_cache), "--device", "cpu"]
        + ["--state-dir", str(tmp_path / "state"), "--ray", address, "--ray-token-file", str(token_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "V2VZ_ENDPOINT": str(tmp_path / "endpoint.json")},
    )
    assert result.returncode == 2 and f"error: nothing answers at {address}: Connection refused" in result.stderr
