"""`v2vz serve --workers 2`: a local Ray cluster of two CPU workers on `tiny`, driven through the daemon's gRPC API.

Every test here talks to a real daemon subprocess whose model workers are Ray actors (their own processes), and
checks what a user would: the outputs (pixel for pixel against the single-worker daemon), the order and count of
the frame events, the journal's record of a retry after a worker is SIGKILLed, how fast a cancel frees the workers,
and what Ray's services listen on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from v2vz.api.endpoint import read_endpoint
from v2vz.api.job import EditJob, EditOptions
from v2vz.client import Client

from ..cluster_kit import EXTERNAL_PROBES, external_address, listening_sockets, process_tree
from ..conftest import CLIPS, serve_tiny

CLIP = CLIPS / "bikes.mp4"  # 640x272: frames written at the source size stay cheap
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the workers' one torch thread: same sums
QUICK = EditOptions(steps=2, size=32, window=8)


@pytest.fixture(scope="module")
def cluster(model_cache):
    """`v2vz serve --workers 2 --device cpu`: env, folder, process."""
    extra = ("--workers", "2", "--worker-threads", "1")
    with serve_tiny(model_cache, "v2vz-cl-", extra=extra, ready_within=180) as served:
        yield served


@pytest.fixture(scope="module")
def single(model_cache):
    """The embedded single worker, on one thread like a cluster worker."""
    with serve_tiny(model_cache, "v2vz-cs-", env=SINGLE_THREAD) as served:
        yield served


def client_of(served) -> Client:
    env = served[0]
    return Client(read_endpoint(Path(env["V2VZ_ENDPOINT"])), timeout=30)


def job(
    out: Path, frames: int = 4, options: EditOptions = QUICK, prompt: str = "a fox in a meadow", start: int = 0
) -> EditJob:
    return EditJob(
        source=CLIP,
        prompt=prompt,
        source_prompt="a rabbit in a meadow",
        start=start,
        frames=frames,
        options=options,
        out_frames_dir=out,
        model="tiny",
    )


def follow(client: Client, job_id: str, on_event=None) -> list:
    events = []
    for event in client.follow(job_id):
        events.append(event)
        if on_event:
            on_event(event)
    return events


def frames_of(events) -> list[int]:
    return [e.frame.index for e in events if e.WhichOneof("kind") == "frame"]


def outcome(events) -> str:
    return events[-1].WhichOneof("kind")


def pixels(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path)) for path in sorted(folder.glob("frame_*.png"))]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def all_idle(client: Client) -> bool:
    workers = client.info().workers
    return len(workers) == 2 and all(w.state == "idle" for w in workers)


def test_four_jobs_run_two_at_a_time_and_match_the_single_worker(cluster, single, tmp_path):
    """4 jobs submitted at once all finish, two at a time (both workers busy at once, never more), pixel-identical
    to the same jobs on the embedded worker."""
    prompts = ["a fox in a meadow", "a wolf in a meadow", "a cat in the snow", "a dog on a beach"]
    with client_of(cluster) as client:
        ids = [client.submit(job(tmp_path / f"c{n}", prompt=p, start=8 * n)).job_id for n, p in enumerate(prompts)]
        results = [follow(client, job_id) for job_id in ids]
        summaries = {s.job_id: s for s in client.jobs(limit=50)}
        assert {w.state for w in client.info().workers} == {"idle"}
    assert [outcome(events) for events in results] == ["done"] * 4
    spans = sorted((summaries[i].started_unix, summaries[i].finished_unix) for i in ids)
    overlap = [sum(1 for s, f in spans if s <= t < f) for t, _ in spans]
    assert max(overlap) == 2, spans  # two at a time, never more than the two workers
    with client_of(single) as client:
        for n, p in enumerate(prompts):
            reference = job(tmp_path / f"s{n}", prompt=p, start=8 * n)
            assert outcome(follow(client, client.submit(reference).job_id)) == "done"
    for n in range(4):
        ours, reference = pixels(tmp_path / f"c{n}"), pixels(tmp_path / f"s{n}")
        assert len(ours) == len(reference) == 4
        for a, b in zip(ours, reference, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"job {n + 1}")


LONG = EditOptions(steps=2, size=32, window=8, window_links="anchored")


def test_a_long_job_is_spread_over_both_workers_frames_in_order_once(cluster, single, tmp_path):
    """32 frames in windows of 8, anchored: the windows run on both workers at once (their progress interleaves,
    each worker edits windows), the frame events come in order, each once, and the pixels are the single worker's."""
    busy: dict[str, set[int]] = {}
    with client_of(cluster) as client:
        job_id = client.submit(job(tmp_path / "c", 32, LONG)).job_id
        stop = threading.Event()

        def watch_workers() -> None:
            with client_of(cluster) as watcher:
                while not stop.is_set():
                    for worker in watcher.info().workers:
                        if worker.job_id == job_id and worker.window:
                            busy.setdefault(worker.name, set()).add(worker.window)
                    time.sleep(0.01)

        thread = threading.Thread(target=watch_workers)
        thread.start()
        try:
            events = follow(client, job_id)
        finally:
            stop.set()
            thread.join()
    assert outcome(events) == "done"
    assert frames_of(events) == list(range(32))
    assert len(busy) == 2 and all(busy.values()), busy  # both workers edited windows of this one job
    edits = [(e.progress.window, e.progress.step) for e in events if e.WhichOneof("kind") == "progress"]
    order = [window for window, _ in edits if window > 0]
    assert any(b < a for a, b in zip(order, order[1:], strict=False)), "no two windows ran at the same time"
    with client_of(single) as client:
        assert outcome(follow(client, client.submit(job(tmp_path / "s", 32, LONG)).job_id)) == "done"
    for a, b in zip(pixels(tmp_path / "c"), pixels(tmp_path / "s"), strict=True):
        np.testing.assert_array_equal(a, b)


KILLED = EditOptions(steps=8, size=48, window=8, window_links="anchored")


def test_a_worker_killed_mid_window_its_window_runs_again_and_the_job_completes(cluster, tmp_path):
    """SIGKILL of a worker's process mid-window: the job still completes, every frame comes once and in order, the
    journal holds the retry with its reason, and Ray brings the worker back (a new pid)."""
    killed: dict[str, int] = {}
    with client_of(cluster) as client:
        before = {w.name: w.pid for w in client.info().workers}
        job_id = client.submit(job(tmp_path / "k", 32, KILLED)).job_id

        def kill_mid_window(event) -> None:
            if killed or event.WhichOneof("kind") != "progress" or event.progress.stage != "edit":
                return
            if event.progress.window < 2 or event.progress.step != 1:
                return
            for worker in client.info().workers:
                if worker.job_id == job_id and worker.window == event.progress.window and worker.state == "busy":
                    os.kill(worker.pid, signal.SIGKILL)
                    killed.update(window=worker.window, pid=worker.pid, name=worker.name)
                    return

        events = follow(client, job_id, kill_mid_window)
        assert killed, "no worker was busy with a window mid-edit"
        assert outcome(events) == "done", events[-1]
        assert frames_of(events) == list(range(32))  # none twice, none lost
        replay = follow(client, job_id)  # the journal's copy, from its first event
        retries = [e.progress for e in replay if e.WhichOneof("kind") == "progress" and e.progress.stage == "retry"]
        assert len(retries) == 1 and retries[0].window == killed["window"], retries
        assert retries[0].step == 1 and retries[0].total == 2
        assert f"worker {killed['name']} (pid {killed['pid']}" in retries[0].reason and "died" in retries[0].reason
        back = wait_for(lambda: all_idle(client) and client.info().workers, 120, "the killed worker to come back")
        pids = {w.name: w.pid for w in back}
        assert pids[killed["name"]] != before[killed["name"]]
    state = Path(cluster[1]) / "state" / "journal.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as db:
        payloads = [row[0] for row in db.execute("SELECT payload FROM events WHERE job_id = ?", (job_id,))]
    assert sum('"retry"' in payload for payload in payloads) == 1


CANCELLED = EditOptions(steps=40, size=48, window=8, window_links="anchored")


def test_cancel_mid_window_frees_both_workers_within_a_step(cluster, tmp_path):
    """Both workers mid-window on one job; a cancel frees them within about a diffusion step (the flag is polled
    every 50 ms and checked per step), the job ends cancelled, and the next job runs on both."""
    with client_of(cluster) as client:
        job_id = client.submit(job(tmp_path / "x", 32, CANCELLED)).job_id
        steps: list[tuple[int, float]] = []
        cancelled_at: list[float] = []

        def cancel_when_both_busy(event) -> None:
            if event.WhichOneof("kind") == "progress" and event.progress.stage in ("inversion", "edit"):
                steps.append((event.progress.window, time.monotonic()))
                busy = [w for w in client.info().workers if w.job_id == job_id and w.window > 0]
                if not cancelled_at and len(busy) == 2 and len(steps) > 50:
                    client.cancel(job_id)
                    cancelled_at.append(time.monotonic())

        events = follow(client, job_id, cancel_when_both_busy)
        freed = time.monotonic()
        wait_for(lambda: all_idle(client), 30, "both workers to be idle")
        freed = time.monotonic() - cancelled_at[0]
        assert outcome(events) == "cancelled"
        per_window: dict[int, list[float]] = {}
        for window, at in steps:
            per_window.setdefault(window, []).append(at)
        step = max(float(np.median(np.diff(ts))) for ts in per_window.values() if len(ts) > 3)
        assert freed < 2 * step + 0.5, (freed, step)  # a step in flight, the 50 ms poll, the replies
        after = client.submit(job(tmp_path / "y", 16, LONG)).job_id
        assert outcome(follow(client, after)) == "done"


def test_a_flowedit_job_runs_on_a_worker_with_its_wan_model(cluster, tmp_path):
    """A FlowEdit job on the cluster: a worker loads the job's Wan model and edits the range as one span (the
    method's plan), every frame written once, in order; the next vid2vid-zero job loads tiny again."""
    flowedit = dataclasses.replace(
        job(tmp_path / "wan", frames=6, options=EditOptions().replace(method="flowedit", steps=4)), model="tiny-wan"
    )
    with client_of(cluster) as client:
        events = follow(client, client.submit(flowedit).job_id)
        assert outcome(events) == "done" and frames_of(events) == list(range(6)), events[-1]
        assert len(list((tmp_path / "wan").glob("*.png"))) == 6
        after = follow(client, client.submit(job(tmp_path / "sd")).job_id)
        assert outcome(after) == "done" and frames_of(after) == list(range(4))


def test_v2vz_status_shows_each_worker(cluster):
    """`v2vz status` (lines and --json) names each worker: node, device, pid, state; the device row says cluster."""
    import json
    import subprocess

    from ..conftest import V2VZ

    env = cluster[0]
    with client_of(cluster) as client:
        pids = {w.name: w.pid for w in client.info().workers}
    lines = subprocess.run([V2VZ, "status"], env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert any(line.startswith("device   2 CPU workers (local Ray cluster), float32") for line in lines), lines
    for name, pid in pids.items():
        assert f"worker   {name} on 127.0.0.2 (cpu, pid {pid}): idle" in lines, lines
    data = json.loads(subprocess.run([V2VZ, "status", "--json"], env=env, capture_output=True, text=True).stdout)
    assert [(w["name"], w["node"], w["device"], w["state"]) for w in data["workers"]] == [
        ("worker-1", "127.0.0.2", "cpu", "idle"),
        ("worker-2", "127.0.0.2", "cpu", "idle"),
    ]


def test_ray_services_listen_on_loopback_or_refuse_calls_without_the_token(cluster):
    """What every Ray process of the local cluster listens on, checked: the node address is loopback (127.0.0.2);
    each socket Ray binds to every interface (its GCS, raylet and core-worker gRPC servers: Ray 2.60 has no setting
    for their bind address, docs/cluster.md) refuses a call without the daemon's token as UNAUTHENTICATED, through
    the machine's external address."""
    process = cluster[2]
    sockets = listening_sockets(process_tree(process.pid) | ray_processes())
    assert sockets, "no Ray sockets found"
    wildcard = [(host, port) for host, port in sockets if host in ("0.0.0.0", "::")]
    loopback = [(host, port) for host, port in sockets if host.startswith("127.") or host == "::1"]
    assert len(wildcard) + len(loopback) == len(sockets), sockets  # nothing on a specific external address
    assert any(host == "127.0.0.2" for host, _ in loopback)  # the runtime-env agent follows the node address
    external = external_address()
    assert not external.startswith("127."), external
    for _, port in wildcard:
        codes = set()
        with grpc.insecure_channel(f"{external}:{port}") as channel:
            for path in EXTERNAL_PROBES:
                call = channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
                try:
                    call(b"", timeout=5)
                    codes.add("OK")
                except grpc.RpcError as error:
                    codes.add(error.code().name)
        assert "OK" not in codes and "UNAUTHENTICATED" in codes, (port, codes)


def ray_processes() -> set[int]:
    """The local cluster's processes (gcs_server and raylet are not children of the daemon on every Ray)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if b"127.0.0.2" in command and (b"gcs_server" in command or b"raylet" in command):
                    pids.add(int(entry.name))
    return pids


def test_a_job_fails_with_the_reason_once_its_retries_are_spent(model_cache, tmp_path):
    """`--worker-retries 0` and a single worker killed mid-window: the job fails at once, ABORTED (WorkerLost),
    with the dead worker in its reason (exit code 1 for the CLI); the worker comes back and the next job is done."""
    extra = ("--workers", "1", "--worker-retries", "0")
    with serve_tiny(model_cache, "v2vz-cr-", extra=extra, ready_within=180) as served, client_of(served) as client:
        job_id = client.submit(job(tmp_path / "a", 16, KILLED)).job_id
        killed: list[int] = []

        def kill_mid_window(event) -> None:
            if killed or event.WhichOneof("kind") != "progress" or event.progress.stage != "edit":
                return
            if event.progress.window >= 1 and event.progress.step == 2:
                (worker,) = client.info().workers
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(worker.pid)

        events = follow(client, job_id, kill_mid_window)
        assert killed and outcome(events) == "failed", events[-1]
        failed = events[-1].failed
        assert failed.code == "ABORTED"
        assert "gave up after 0 retries (--worker-retries 0); worker worker-1 (pid" in failed.reason, failed.reason
        assert f"pid {killed[0]} on 127.0.0.2) died" in failed.reason
        assert not [e for e in events if e.WhichOneof("kind") == "progress" and e.progress.stage == "retry"]
        wait_for(lambda: [w for w in client.info().workers if w.state == "idle"], 120, "the worker to come back")
        assert outcome(follow(client, client.submit(job(tmp_path / "b", 4)).job_id)) == "done"
