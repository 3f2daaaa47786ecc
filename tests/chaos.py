"""Chaos runs: SIGKILL a real `v2vz serve` and a real `v2vz watch` at random moments, restart them, and count.

Nothing may be lost (every job ends done, every dropped clip is edited), nothing repeated (one job per clip, one
terminal event per job) and no temporary file may be left behind. tests/scenarios/test_chaos.py runs a few kills of
each in the suite; for the long run with figures:

    python -m tests.chaos --kills 20 --jobs 6 --clips 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

V2VZ = str(Path(sys.executable).with_name("v2vz"))
SOURCE, TARGET = "a red square on a field", "a blue circle on a field"


def make_clip(path: Path, frames: int = 6, seed: int = 0) -> Path:
    from .media_kit import write_mp4

    rng = np.random.default_rng(seed)
    return write_mp4((rng.random((frames, 48, 64, 3)) * 255).astype(np.uint8), path, Fraction(24))


class Daemon:
    """A `v2vz serve --model tiny` subprocess that can be killed and started again on the same state folder."""

    def __init__(self, work: Path, model_cache: Path) -> None:
        self.work = work
        self.env = {**os.environ, "V2VZ_ENDPOINT": str(work / "run" / "endpoint.json")}
        cache = work / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        models = Path(model_cache) / "models"
        if models.is_dir() and not (cache / "models").exists():
            (cache / "models").symlink_to(models)  # the built `tiny` is reused, the state is this run's own
        # Random kills hit a job again and again; the guard against a job that keeps killing the daemon (3 attempts)
        # is tested elsewhere, so it is out of the way here.
        self.command = [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(cache), "--device", "cpu"]
        self.command += ["--max-attempts", "1000"]
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        log = open(self.work / "serve.log", "a")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.work / "serve.log").read_text()[-3000:]
            with contextlib.suppress(Exception), self.client(timeout=2) as client:
                if client.info().ready:
                    return
            time.sleep(0.1)
        raise AssertionError("the daemon did not get ready in 90 s")

    def client(self, timeout: float = 10.0):
        from v2vz.api.endpoint import read_endpoint
        from v2vz.client import Client

        return Client(read_endpoint(Path(self.env["V2VZ_ENDPOINT"])), timeout=timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def temporaries(folder: Path) -> list[str]:
    """Hidden partial files (`.NAME.*.part.*`, `*.tmp`) anywhere under `folder`."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob(".*")
        if path.is_file() and (".part." in path.name or path.name.endswith(".tmp"))
    )


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def daemon_chaos(work: Path, model_cache: Path, kills: int, jobs: int, rng: random.Random) -> dict:
    """Submit `jobs` jobs, SIGKILL the daemon `kills` times while they run, restart it each time; then count."""
    from v2vz.api.job import EditJob, EditOptions

    clip = make_clip(work / "clip.mp4")
    daemon = Daemon(work, model_cache)
    daemon.start()
    out = work / "out"
    submitted = []
    try:
        with daemon.client() as client:
            for n in range(jobs):
                job = EditJob(
                    clip,
                    TARGET,
                    SOURCE,
                    start=0,
                    frames=4,
                    options=EditOptions(steps=4, window=1),
                    output=out / f"{n}.mp4",
                    out_frames_dir=out / f"{n}",
                )
                submitted.append(client.submit(job, client="chaos").job_id)
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 2.5))
            daemon.kill()
            daemon.start()
        with daemon.client() as client:
            wait_until(
                lambda: all(j.state in ("done", "failed", "cancelled") for j in client.jobs(limit=jobs)),
                300,
                "every job to end",
            )
            listed = {job.job_id: job for job in client.jobs(limit=jobs)}
            terminal_events = {
                job_id: sum(e.WhichOneof("kind") in ("done", "failed", "cancelled") for e in client.follow(job_id))
                for job_id in submitted
            }
    finally:
        daemon.stop()
    from v2vz_engine import media

    lost = [j for j in submitted if j not in listed or listed[j].state != "done"]
    broken = [
        n for n in range(jobs) if not (out / f"{n}.mp4").exists() or media.probe(out / f"{n}.mp4").frame_count != 4
    ]
    repeated = [j for j, count in terminal_events.items() if count != 1]
    return {
        "daemon starts": daemon.starts,
        "daemon kills": kills,
        "jobs": jobs,
        "jobs lost": len(lost) + len(broken),
        "jobs repeated": len(repeated) + len(listed) - len(submitted),
        "attempts": sum(job.attempts for job in listed.values()),
        "temporaries left": temporaries(out),
    }


def watcher_chaos(work: Path, model_cache: Path, kills: int, clips: int, rng: random.Random) -> dict:
    """Drop `clips` clips into a watched folder, SIGKILL the watcher `kills` times, restart it; then count."""
    daemon = Daemon(work, model_cache)
    daemon.start()
    in_dir, out_dir = work / "in", work / "watched-out"
    in_dir.mkdir()
    (in_dir / "v2vz.toml").write_text(
        f'prompt = "{TARGET}"\nsource_prompt = "{SOURCE}"\nframes = 3\nsteps = 4\nwindow = 1\n', encoding="utf-8"
    )
    command = [V2VZ, "watch", str(in_dir), "--out", str(out_dir), "--settle", "0.2"]
    watcher_starts = 0

    def start_watcher() -> subprocess.Popen:
        nonlocal watcher_starts
        watcher_starts += 1
        log = open(work / "watch.log", "a")  # noqa: SIM115
        return subprocess.Popen(command, env=daemon.env, stdout=log, stderr=subprocess.STDOUT)

    try:
        for n in range(clips):
            make_clip(work / f"staging-{n}.mp4", seed=n)
            os.replace(work / f"staging-{n}.mp4", in_dir / f"clip{n}.mp4")
        watcher = start_watcher()
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 2.5))
            watcher.send_signal(signal.SIGKILL)
            watcher.wait(30)
            watcher = start_watcher()
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
        finish = subprocess.run([*command, "--once"], env=daemon.env, capture_output=True, text=True, timeout=600)
        assert finish.returncode == 0, finish.stderr[-3000:]
        with daemon.client() as client:
            jobs = [job for job in client.jobs(limit=500)]
    finally:
        daemon.stop()
    done = sorted(p.name for p in (in_dir / "done").glob("clip*.mp4")) if (in_dir / "done").exists() else []
    per_source: dict[str, int] = {}
    for job in jobs:
        per_source[Path(job.source).name] = per_source.get(Path(job.source).name, 0) + 1
    outputs = sorted(p.name for p in out_dir.glob("*.mp4"))
    return {
        "watcher starts": watcher_starts + 1,
        "watcher kills": kills,
        "clips": clips,
        "clips lost": clips - len(done),
        "clips repeated": sum(count - 1 for count in per_source.values()) + len(outputs) - clips,
        "temporaries left": temporaries(out_dir) + temporaries(in_dir),
    }


@contextlib.contextmanager
def short_folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="v2vz-chaos-", dir="/tmp"))  # Unix socket paths must stay short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the daemon, and of the watcher")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model-cache", type=Path, default=Path(os.environ.get("V2VZ_CACHE", "~/.cache/v2vz")))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    began = time.monotonic()
    with short_folder() as work:
        figures = daemon_chaos(work / "d", args.model_cache.expanduser(), args.kills, args.jobs, rng)
    with short_folder() as work:
        figures |= watcher_chaos(work / "w", args.model_cache.expanduser(), args.kills, args.clips, rng)
    figures["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(figures, indent=2))
    clean = not (figures["jobs lost"] or figures["jobs repeated"] or figures["clips lost"] or figures["clips repeated"])
    return 0 if clean and not figures["temporaries left"] else 1


if __name__ == "__main__":
    sys.exit(main())
