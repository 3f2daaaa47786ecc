"""`v2vz serve --workers 2` when Ray's own processes die: the daemon lives on and brings its local cluster back.

One real daemon subprocess for the module (its model workers are Ray actors of a local cluster). Its raylet is
SIGKILLed mid-job, then its GCS while idle: each time the daemon keeps answering, its workers show `restarting`, the
windows in flight run again on the new cluster, and the job completes with every frame once. Last, SIGTERM: the
daemon stops cleanly and nothing of Ray reaches its terminal (Ray's logs, warnings and stack dumps stay in the
daemon's private Ray folder).
"""

from __future__ import annotations

import os
import re
import signal
import stat
from pathlib import Path

import pytest

from v2vz.api.job import EditOptions

from ..cluster_kit import process_tree
from ..conftest import serve_tiny
from .test_cluster import client_of, follow, frames_of, job, outcome, wait_for

KILLED = EditOptions(steps=8, size=48, window=8, window_links="anchored")
BACK_WITHIN = 180  # seconds for a new local cluster and two model loads on a busy 2-core machine


@pytest.fixture(scope="module")
def cluster(model_cache):
    """`v2vz serve --workers 2 --device cpu`: (env, folder, process)."""
    extra = ("--workers", "2", "--worker-threads", "1", "--worker-retries", "2")
    with serve_tiny(model_cache, "v2vz-r3-", extra=extra, ready_within=180) as served:
        yield served


def ray_pids(process, program: str) -> list[int]:
    """The daemon's Ray processes whose command line names `program` (raylet/raylet, gcs_server)."""
    found = []
    for pid in process_tree(process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if program in command.split(" ", 1)[0]:
            found.append(pid)
    return found


def log_of(cluster) -> str:
    return (Path(cluster[1]) / "serve.log").read_text()


def test_the_daemon_uses_a_private_folder_for_ray(cluster):
    """Ray's session files (logs, the raylet's socket) are in a 0700 folder of the daemon's, not in /tmp/ray."""
    process = cluster[2]
    (raylet,) = ray_pids(process, "raylet/raylet")
    command = Path(f"/proc/{raylet}/cmdline").read_bytes().decode(errors="replace").split("\0")
    socket_name = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--raylet_socket_name="))
    folder = Path(socket_name).parents[3]  # FOLDER/ray/session_.../sockets/raylet
    assert folder.name.startswith("v2vz-ray-"), socket_name
    info = folder.stat()
    assert info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    for pid in process_tree(process.pid):
        try:
            assert b"/tmp/ray/" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue


def test_a_dead_raylet_mid_job_the_daemon_lives_and_the_job_completes(cluster, tmp_path):
    """SIGKILL of the local raylet while both workers edit windows: the daemon keeps answering (its workers show
    `restarting`), brings a new cluster up, and the job completes with every frame once and in order; the retries
    name a death, and the daemon's log says once that the cluster is gone, naming the driver's end and the raylet."""
    process = cluster[2]
    killed: dict[str, object] = {}
    with client_of(cluster) as client:
        before = {w.name: w.pid for w in client.info().workers}
        job_id = client.submit(job(tmp_path / "k", 24, KILLED)).job_id

        def kill_raylet_mid_window(event) -> None:
            if killed or event.WhichOneof("kind") != "progress" or event.progress.stage != "edit":
                return
            if event.progress.window < 1 or event.progress.step != 1:
                return
            (raylet,) = ray_pids(process, "raylet/raylet")
            os.kill(raylet, signal.SIGKILL)
            killed["raylet"] = raylet
            killed["states"] = wait_for(
                lambda: {w.state for w in client.info().workers} == {"restarting"}, 60, "both workers restarting"
            )

        events = follow(client, job_id, kill_raylet_mid_window)
        assert killed, "the raylet was never killed"
        assert process.poll() is None, log_of(cluster)
        assert killed["states"]  # status answered while the cluster was down, both workers `restarting`
        assert outcome(events) == "done", events[-1]
        assert frames_of(events) == list(range(24))  # none twice, none lost
        retries = [e.progress for e in events if e.WhichOneof("kind") == "progress" and e.progress.stage == "retry"]
        assert 1 <= len(retries) <= 2, retries  # the windows that were in flight
        for retry in retries:  # the driver's end (Ray ends it at once), or first the actor's if Ray saw that first
            assert ") died: " in retry.reason, retry.reason
        back = wait_for(lambda: all(w.state == "idle" for w in client.info().workers), BACK_WITHIN, "idle workers")
        assert back
        after = {w.name: w.pid for w in client.info().workers}
        assert set(after) == set(before) and not set(after.values()) & set(before.values())  # a new cluster
    text = log_of(cluster)
    gone = [line for line in text.splitlines() if "the Ray cluster is gone" in line]
    assert len(gone) == 1 and "the Ray driver process" in gone[0] and "raylet" in gone[0], text
    assert "the Ray cluster is back: 2 CPU workers" in text, text


def test_a_dead_gcs_while_idle_the_cluster_comes_back_and_runs_jobs(cluster, tmp_path):
    """SIGKILL of the local GCS between jobs: the daemon notices within seconds (not Ray's 60), its workers show
    `restarting` and come back, and the next job is done."""
    process = cluster[2]
    with client_of(cluster) as client:
        before = {w.pid for w in client.info().workers}
        (gcs,) = ray_pids(process, "gcs_server")
        os.kill(gcs, signal.SIGKILL)
        wait_for(lambda: {w.state for w in client.info().workers} == {"restarting"}, 30, "restarting workers")
        wait_for(lambda: all(w.state == "idle" for w in client.info().workers), BACK_WITHIN, "idle workers")
        assert process.poll() is None
        assert not {w.pid for w in client.info().workers} & before
        events = follow(client, client.submit(job(tmp_path / "g", 8)).job_id)
        assert outcome(events) == "done" and frames_of(events) == list(range(8))


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) \S")


def test_sigterm_stops_the_daemon_and_its_cluster_with_nothing_of_ray_on_the_terminal(cluster):
    """SIGTERM: the daemon exits 0 within seconds, every Ray process of its cluster is gone, its private Ray folder
    is removed, and its terminal got only the daemon's own log lines (no Ray warning, raylet log or stack dump)."""
    process = cluster[2]
    tree = process_tree(process.pid) - {process.pid}
    (raylet,) = ray_pids(process, "raylet/raylet")
    command = Path(f"/proc/{raylet}/cmdline").read_bytes().decode(errors="replace").split("\0")
    folder = Path(next(a.split("=", 1)[1] for a in command if a.startswith("--raylet_socket_name="))).parents[3]
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    left = [pid for pid in tree if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not left, left
    assert not folder.exists()
    lines = [line for line in log_of(cluster).splitlines() if line.strip()]
    strays = [line for line in lines if not LOG_LINE.match(line)]
    assert not strays, strays


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_cluster_that_cannot_come_back_is_said_once_and_tried_again(tmp_path, monkeypatch, caplog):
    """No Ray here: the driver's restart fails (e.g. Ray cannot start): one log line says why, the windows waiting
    for a worker fail with that reason (WorkerLost), no job starts (not ready), and the next try that works brings
    the workers back."""
    import threading

    from v2vz.api.errors import ClusterUnavailable, WorkerLost
    from v2vz_daemon.cluster import service
    from v2vz_daemon.cluster.connect import ClusterConfig
    from v2vz_daemon.cluster.dispatch import WorkerPool

    class FakeDriver:
        generation, alive, folder = 7, True, tmp_path

        def call(self, method, *args, **_):
            return {"node": "127.0.0.2", "device": "cpu", "pid": 4242} if method == "load" else None

        def stop(self):
            self.alive = False

    monkeypatch.setattr(service, "RESTART_PAUSE", (0.01, 0.05))
    cluster = service.Cluster(ClusterConfig(workers=2, device="cpu"), "tiny", tmp_path, None, 0)
    cluster.size, cluster.pool = 2, WorkerPool(["worker-1", "worker-2"])
    dead, works, tries = FakeDriver(), threading.Event(), []

    def spawn() -> dict:
        tries.append(1)
        if not works.is_set():
            raise ClusterUnavailable("cannot start the local Ray cluster: no room\nfor it")
        cluster.driver = FakeDriver()
        return {"size": 2, "gpu": False, "version": "2.60.0"}

    monkeypatch.setattr(cluster, "_spawn", spawn)
    cluster.driver = dead
    with caplog.at_level("INFO", logger="v2vz.daemon"):
        cluster._driver_died(dead, "the Ray driver process (pid 1) ended (exit code 3): raylet died")
        wait_for(lambda: len(tries) >= 3 and cluster.pool.down, 10, "failed restarts")
        assert not cluster.ready.is_set()
        with pytest.raises(WorkerLost, match="no worker: the Ray cluster cannot be brought back: cannot start the "):
            cluster.pool.acquire("job", 1, None)
        said = [r.getMessage() for r in caplog.records if "cannot be brought back" in r.getMessage()]
        assert len(said) == 1 and "\n" not in said[0], said  # said once, in one line, though tried many times
        assert "keeps serving its journal, status and cancel" in said[0]
        works.set()
        assert cluster.ready.wait(10)
    assert cluster.pool.down is None
    assert [(w.state, w.pid) for w in cluster.workers()] == [("idle", 4242), ("idle", 4242)]
    assert any("the Ray cluster is back: 2 CPU workers" in r.getMessage() for r in caplog.records)
    cluster.stopping.set()
