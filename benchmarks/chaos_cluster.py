"""Chaos on a cluster: SIGKILL busy model workers at random moments while many anchored jobs run, and count.

    python benchmarks/chaos_cluster.py [--jobs 6] [--frames 24] [--window 6] [--kills 8] [--retries 5]

A real `v2vz serve --workers 2 --device cpu --worker-retries R` (a local Ray cluster, `tiny`) gets --jobs anchored
jobs of --frames frames at once; a killer SIGKILLs the process of a worker that is busy with a window, --kills times,
a random 0.5-3 s apart (each time after the killed worker is back). Nothing may be lost or repeated: every job must end
done, with each of its frames announced once and in order and on disk, and the journal must hold one `retry` event
per kill that hit a window. Prints the figures; exits 1 if any check fails. tests/daemon/test_cluster.py runs single
kills in the suite; this is the longer run.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_cluster import CLIP, client_of, daemon  # noqa: E402 - a sibling script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_TEST_CACHE", "/tmp/v2vz-bench")))
    args = parser.parse_args()

    from v2vz.api.job import EditJob, EditOptions

    rng = random.Random(args.seed)
    options = EditOptions(steps=args.steps, size=48, window=args.window, window_links="anchored")
    out = Path(tempfile.mkdtemp(prefix="v2vz-chaos-"))
    extra = ["--workers", "2", "--worker-threads", "1", "--worker-retries", str(args.retries)]
    kills: list[tuple[str, int, str, int]] = []  # (worker, pid, job, window)
    began = time.monotonic()
    with daemon("chaos", args.cache_dir, extra) as served, client_of(served) as client:
        jobs = [
            EditJob(
                source=CLIP,
                prompt="people riding horses on a road",
                source_prompt="people riding bikes on a road",
                start=n * 7,
                frames=args.frames,
                options=options,
                out_frames_dir=out / f"job{n}",
            )
            for n in range(args.jobs)
        ]
        ids = [client.submit(job).job_id for job in jobs]
        finished = threading.Event()

        def killer() -> None:
            with client_of(served) as watcher:
                while len(kills) < args.kills and not finished.is_set():
                    time.sleep(rng.uniform(0.5, 3.0))
                    workers = watcher.info().workers
                    if any(w.state != "idle" and w.state != "busy" for w in workers):
                        continue  # one comes back from the last kill: wait for it
                    busy = [w for w in workers if w.state == "busy" and w.job_id]
                    if not busy:
                        continue
                    victim = rng.choice(busy)
                    try:
                        os.kill(victim.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    kills.append((victim.name, victim.pid, victim.job_id, victim.window))
                    print(
                        f"{time.monotonic() - began:6.1f} s: killed {victim.name} (pid {victim.pid}), "
                        f"job {victim.job_id} window {victim.window}",
                        flush=True,
                    )

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        results = {}
        for job_id in ids:
            results[job_id] = list(client.follow(job_id))
        finished.set()
        thread.join(timeout=10)
        replays = {job_id: list(client.follow(job_id)) for job_id in ids}
    elapsed = time.monotonic() - began

    failures = []
    retries = 0
    for n, job_id in enumerate(ids):
        events = results[job_id]
        kind = events[-1].WhichOneof("kind")
        frames = [e.frame.index for e in events if e.WhichOneof("kind") == "frame"]
        on_disk = len(list((out / f"job{n}").glob("frame_*.png")))
        job_retries = sum(
            1 for e in replays[job_id] if e.WhichOneof("kind") == "progress" and e.progress.stage == "retry"
        )
        retries += job_retries
        if kind != "done":
            failures.append(f"job {job_id} ended {kind}: {events[-1]}")
        if frames != list(range(args.frames)):
            failures.append(f"job {job_id}: frames announced {frames}")
        if on_disk != args.frames:
            failures.append(f"job {job_id}: {on_disk} PNGs on disk, not {args.frames}")
        print(
            f"job {job_id}: {kind}, {len(frames)} frames announced in order once, {on_disk} on disk, "
            f"{job_retries} retries"
        )
    # a kill that lands between two spans (the worker just finished) costs no retry; one mid-span costs one
    if retries > len(kills):
        failures.append(f"{retries} retries for {len(kills)} kills: a window ran again with no worker death")
    print()
    shape = f"{args.jobs} jobs x {args.frames} frames (anchored windows of {args.window})"
    print(f"{shape} on 2 workers in {elapsed:.1f} s")
    print(
        f"kills: {len(kills)}; retries in the journal: {retries}; jobs done: "
        f"{sum(results[i][-1].WhichOneof('kind') == 'done' for i in ids)}/{args.jobs}"
    )
    print("every check passed" if not failures else "FAILED:\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
