"""The daemon on a Ray cluster: throughput of many jobs and the time of one long job, 1 vs 2 model workers.

    python benchmarks/bench_cluster.py [--jobs 8] [--long-frames 64] [--window 8] [--steps 10] [--size 64]

Every figure comes from real `v2vz serve` daemons (subprocesses) driven through the gRPC client, as a plugin would:
- embedded: `v2vz serve` without a cluster (the in-process worker) under OMP_NUM_THREADS=1, the reference;
- cluster 1 / cluster 2: `v2vz serve --workers 1|2 --worker-threads 1`: a local Ray cluster with one or two CPU
  workers of one torch thread each (on these 2 cores, two workers is all the machine has).
Each daemon is started once and warmed up with one job; the measured runs alternate between the daemons (A B C A B C)
so that a drift of the machine's speed hits them alike, and the median of --repeats runs is quoted.

1. Throughput: --jobs `tiny` jobs (--job-frames frames each, each of its own frames: no inversion cache hit)
   submitted at once; jobs per minute from the first submit to the last `done`.
2. One long job: --long-frames frames in windows of --window, `window_links: anchored`; its wall time. With
   chained windows (the default) a job's windows depend on each other, so a second worker cannot help; that run
   is shown for reference on cluster 2.
3. Front-end overhead per window: each span's round trip in the front end (from the actor call to its result in
   hand) less its edit's time inside the worker, i.e. what sending a window to a Ray actor, polling its progress and
   taking its frames back costs; the daemon reports it as the job's `dispatch` timing, summed over its spans. The
   wall times of cluster 1 against embedded are shown too: there the front end's writing overlaps the worker's edit.
4. Projection for N workers (GPUs): anchored T(N) = anchor pass + ceil(W / N) x (window + overhead); chained
   T(N) = W x window whatever N; from the measured window time and overhead (docs/cluster.md).

Targets (issue 16): >= 1.6x throughput with 2 workers, >= 1.5x faster long job, overhead < 50 ms per window.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "clips" / "bikes.mp4"  # 640x272, 250 frames
V2VZ = str(Path(sys.executable).with_name("v2vz"))
TARGET_THROUGHPUT = 1.6
TARGET_LONG = 1.5
TARGET_OVERHEAD_S = 0.050


@dataclass
class Daemon:
    name: str
    env: dict
    process: subprocess.Popen
    folder: Path


@contextlib.contextmanager
def daemon(name: str, cache: Path, extra: list[str], env: dict | None = None) -> Iterator[Daemon]:
    from v2vz.api.endpoint import read_endpoint
    from v2vz.client import Client

    folder = Path(tempfile.mkdtemp(prefix=f"v2vz-bc-{name}-", dir="/tmp"))
    environment = {**os.environ, **(env or {}), "V2VZ_ENDPOINT": str(folder / "run" / "endpoint.json")}
    command = [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(cache), "--device", "cpu"]
    command += ["--state-dir", str(folder / "state"), "--cache-size", "0", *extra]
    log = open(folder / "serve.log", "w")  # noqa: SIM115 - lives as long as the daemon
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{name} died:\n{(folder / 'serve.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} not ready in 240 s")
            endpoint = Path(environment["V2VZ_ENDPOINT"])
            if endpoint.exists():
                with contextlib.suppress(Exception), Client(read_endpoint(endpoint), timeout=5) as client:
                    if client.info().ready:
                        break
            time.sleep(0.2)
        yield Daemon(name, environment, process, folder)
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(60)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def client_of(target: Daemon):
    from v2vz.api.endpoint import read_endpoint
    from v2vz.client import Client

    return Client(read_endpoint(Path(target.env["V2VZ_ENDPOINT"])), timeout=60)


def make_job(out: Path, start: int, frames: int, options):
    from v2vz.api.job import EditJob

    return EditJob(
        source=CLIP,
        prompt="people riding horses on a road",
        source_prompt="people riding bikes on a road",
        start=start,
        frames=frames,
        options=options,
        out_frames_dir=out,
        model="tiny",
    )


DISPATCH: dict[str, list[float]] = {}  # daemon: the `dispatch` timing of every job (seconds, summed over its spans)
SPANS: dict[str, int] = {}  # daemon: spans run (windows, and anchor passes)


def run_jobs(target: Daemon, jobs: list) -> float:
    """Submit every job at once, wait for all; seconds from the first submit to the last `done`."""
    with client_of(target) as client:
        began = time.monotonic()
        ids = [client.submit(job).job_id for job in jobs]
        for job_id in ids:
            last = None
            for event in client.follow(job_id):
                last = event
                if event.WhichOneof("kind") == "progress" and (
                    event.progress.stage == "window" or (event.progress.stage == "anchors" and event.progress.step == 0)
                ):
                    SPANS[target.name] = SPANS.get(target.name, 0) + 1
            if last is None or last.WhichOneof("kind") != "done":
                raise SystemExit(f"{target.name}: job {job_id} ended {last}")
            if "dispatch" in last.done.timings:
                DISPATCH.setdefault(target.name, []).append(last.done.timings["dispatch"])
        return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--job-frames", type=int, default=8)
    parser.add_argument("--long-frames", type=int, default=64)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_TEST_CACHE", "/tmp/v2vz-bench")))
    args = parser.parse_args()

    import torch

    from v2vz.api.job import EditOptions

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)
    try:
        import ray

        print(f"ray {ray.__version__}")
    except ImportError:
        raise SystemExit("the cluster extra is needed: pip install -e '.[cluster]'") from None
    short = EditOptions(steps=args.steps, size=args.size, window=args.window)
    anchored = short.replace(window_links="anchored")
    work = Path(tempfile.mkdtemp(prefix="v2vz-bc-out-"))
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    figures: dict[str, dict[str, list[float]]] = {}
    count = 0

    def out() -> Path:
        nonlocal count
        count += 1
        return work / f"j{count}"

    try:
        with (
            daemon("embedded", args.cache_dir, [], env=one_thread) as embedded,
            daemon("cluster-1", args.cache_dir, ["--workers", "1", "--worker-threads", "1"]) as one,
            daemon("cluster-2", args.cache_dir, ["--workers", "2", "--worker-threads", "1"]) as two,
        ):
            targets = (embedded, one, two)
            for target in targets:  # warm-up: the first job of a worker pays for lazy imports and allocations
                run_jobs(target, [make_job(out(), 0, args.window * 2, anchored)])
            for repeat in range(args.repeats):
                for target in targets:
                    span = args.job_frames
                    jobs = [make_job(out(), (repeat * args.jobs + n) * 3 % 240, span, short) for n in range(args.jobs)]
                    figures.setdefault(target.name, {}).setdefault("jobs", []).append(run_jobs(target, jobs))
                    long_job = make_job(out(), 0, args.long_frames, anchored)
                    figures[target.name].setdefault("long", []).append(run_jobs(target, [long_job]))
                chained = make_job(out(), 0, args.long_frames, short)
                figures.setdefault("cluster-2 chained", {}).setdefault("long", []).append(run_jobs(two, [chained]))
                print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in figures.items()}
    windows = math.ceil(args.long_frames / args.window)
    print()
    print(
        f"{args.jobs} jobs of {args.job_frames} frames; one job of {args.long_frames} frames in windows of "
        f"{args.window} ({windows} windows + the anchor pass); tiny, {args.size} px, {args.steps} steps; "
        f"median of {args.repeats}"
    )
    print(f"{'daemon':<20}{'8 jobs (s)':>12}{'jobs/min':>10}{'long job (s)':>14}")
    for name, kinds in med.items():
        jobs = kinds.get("jobs")
        rate = f"{60 * args.jobs / jobs:10.1f}" if jobs else f"{'':>10}"
        print(f"{name:<20}{(f'{jobs:.2f}' if jobs else ''):>12}{rate}{kinds['long']:>14.2f}")
    throughput = med["cluster-1"]["jobs"] / med["cluster-2"]["jobs"]
    long_speedup = med["cluster-1"]["long"] / med["cluster-2"]["long"]
    overhead = sum(DISPATCH.get("cluster-1", [])) / max(SPANS.get("cluster-1", 0), 1)
    overhead_2 = sum(DISPATCH.get("cluster-2", [])) / max(SPANS.get("cluster-2", 0), 1)
    print()
    print(f"throughput, 2 workers vs 1: {throughput:.2f}x (target >= {TARGET_THROUGHPUT}x)")
    print(f"long job, 2 workers vs 1:   {long_speedup:.2f}x faster (target >= {TARGET_LONG}x)")
    print(f"2 workers vs the embedded worker: {med['embedded']['jobs'] / med['cluster-2']['jobs']:.2f}x throughput, ")
    print(f"  {med['embedded']['long'] / med['cluster-2']['long']:.2f}x on the long job")
    verdict_overhead = "meets" if overhead < TARGET_OVERHEAD_S else "misses"
    print(
        f"front-end overhead per window (round trip - the worker's edit), mean over cluster 1's spans: "
        f"{overhead * 1000:.0f} ms ({verdict_overhead} the target < {TARGET_OVERHEAD_S * 1000:.0f} ms); "
        f"cluster 2: {overhead_2 * 1000:.0f} ms"
    )
    per_window = (med["embedded"]["long"]) / (windows + 1)  # the anchor pass costs about a window
    print()
    print(f"projection from the measured window time ({per_window:.2f} s) and overhead ({overhead * 1000:.0f} ms):")
    print(f"{'workers':>8}{'anchored (s)':>14}{'chained (s)':>13}")
    for n in (1, 2, 4, 8, 16):
        anchored_t = per_window + math.ceil(windows / n) * (per_window + max(overhead, 0.0))
        print(f"{n:>8}{anchored_t:>14.2f}{windows * per_window:>13.2f}")


if __name__ == "__main__":
    main()
