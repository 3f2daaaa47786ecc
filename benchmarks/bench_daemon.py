"""Daemon benchmarks: a re-prompt served from the inversion cache vs. a cold edit, and the daemon's own overhead.

    python benchmarks/bench_daemon.py [--model tiny] [--frames 8] [--steps 50] [--size 64] [--runs 2] [--device auto]

- cold vs. re-prompt: the same clip and settings through a real `v2vz serve` subprocess; the first edit of a clip
  inverts it, a second edit with another target prompt reuses the cached inversion. Targets: re-prompt >= 4x faster.
- overhead: the end-to-end wall time of an edit through the daemon (submit -> done event, as a client sees it) vs.
  the engine's own time for the same edit (`run_job` in this process on a warm pipeline, same clip and settings,
  cache disabled). Targets: under 5% and under 1 s.
Each run uses a freshly written clip (new content, so the cache misses) unless it is the re-prompt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.media_kit (write_mp4)

SOURCE, TARGETS = "a red ball rolling over green grass", ("a blue ball rolling over snow", "a golden ball on sand")


def write_clip(path: Path, frames: int, seed: int) -> Path:
    """A sample clip with a per-run tint: new content, so the daemon's cache cannot serve it."""
    from tests.media_kit import write_mp4
    from v2vz.cli.sample import make_sample_clip
    from v2vz_engine import media

    base = path.with_suffix(".base.mp4")
    make_sample_clip(base, frames=frames, width=256, height=256)
    pixels, info = media.read_frames(base, 0, frames)
    tint = np.random.default_rng(seed).integers(0, 40, size=3)
    write_mp4(np.clip(pixels.astype(int) + tint, 0, 255).astype(np.uint8), path, info.fps or Fraction(24))
    base.unlink()
    return path


def start_daemon(args, root: Path) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "V2VZ_ENDPOINT": str(root / "run" / "endpoint.json")}
    command = [
        sys.executable,
        "-m",
        "v2vz.cli.main",
        "serve",
        "--model",
        args.model,
        "--cache-dir",
        str(args.cache_dir),
        "--device",
        args.device,
        "--listen",
        f"unix:{root / 'run' / 'd.sock'}",
    ]
    log = open(root / "daemon.log", "w")  # noqa: SIM115 - lives as long as the daemon
    process = subprocess.Popen(command, env=env, stderr=log, stdout=log)
    os.environ["V2VZ_ENDPOINT"] = env["V2VZ_ENDPOINT"]
    from v2vz.client import Client

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with Client(timeout=2) as client:
                if client.info().ready:
                    return process, env
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if process.poll() is not None:
            raise SystemExit(f"the daemon exited: see {root / 'daemon.log'}")
        time.sleep(0.2)
    raise SystemExit("the daemon did not become ready in 300 s")


def edit_through_daemon(job) -> tuple[float, dict]:
    from v2vz.client import Client

    began = time.perf_counter()
    with Client() as client:
        job_id = client.submit(job).job_id
        for event in client.follow(job_id):
            kind = event.WhichOneof("kind")
            if kind == "failed":
                raise SystemExit(f"job failed: {event.failed.reason}")
            if kind == "done":
                return time.perf_counter() - began, dict(event.done.timings) | {"cached": event.done.inversion_cached}
    raise SystemExit("the job never finished")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--null-steps", type=int, default=None, help="null-text inner steps (default: EditOptions')")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_CACHE", Path.home() / ".cache/v2vz"))
    )
    args = parser.parse_args(argv)

    import torch

    from v2vz.api.job import EditJob, EditOptions
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.run import run_job

    root = Path(tempfile.mkdtemp(prefix="v2vz-bd-", dir="/tmp"))
    options = EditOptions(steps=args.steps, size=args.size, inversion="null-text")  # the figures in docs/benchmarks.md
    if args.null_steps:
        options = options.replace(null_inner_steps=args.null_steps)
    print(
        f"v2vz daemon benchmark: {args.model}, {args.frames} frames at {args.size}px long side, {args.steps} steps, "
        f"null-text on ({options.null_inner_steps} inner steps); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )

    def job(clip: Path, target: str, name: str) -> EditJob:
        return EditJob(
            source=clip,
            prompt=target,
            source_prompt=SOURCE,
            frames=args.frames,
            options=options,
            output=root / f"{name}.mp4",
            model=args.model,
        )

    # The engine alone, in this process, warm.
    pipeline = VideoEditPipeline(load_model(args.model, args.device, args.cache_dir))
    run_job(job(write_clip(root / "warm.mp4", args.frames, 99), TARGETS[0], "warm"), pipeline)
    engine = []
    for run in range(args.runs):
        clip = write_clip(root / f"engine{run}.mp4", args.frames, run)
        began = time.perf_counter()
        run_job(job(clip, TARGETS[0], f"engine{run}"), pipeline)
        engine.append(time.perf_counter() - began)
    del pipeline

    process, _ = start_daemon(args, root)
    try:
        edit_through_daemon(job(write_clip(root / "dwarm.mp4", args.frames, 98), TARGETS[0], "dwarm"))  # warm-up
        cold, warm = [], []
        for run in range(args.runs):
            clip = write_clip(root / f"daemon{run}.mp4", args.frames, 100 + run)
            seconds, timings = edit_through_daemon(job(clip, TARGETS[0], f"cold{run}"))
            assert not timings["cached"], "a fresh clip was served from the cache"
            cold.append(seconds)
            seconds, timings = edit_through_daemon(job(clip, TARGETS[1], f"warm{run}"))
            assert timings["cached"], "the re-prompt missed the cache"
            warm.append(seconds)
    finally:
        process.terminate()
        process.wait(30)

    best_engine, best_cold, best_warm = min(engine), min(cold), min(warm)
    overhead = best_cold - best_engine
    ratio = best_cold / best_warm
    rows = [
        ("engine alone (run_job in-process, warm), best of runs", best_engine, ""),
        ("cold edit through the daemon (submit -> done)", best_cold, ""),
        ("re-prompt through the daemon (inversion cached)", best_warm, ""),
        ("re-prompt speed-up (cold / re-prompt)", ratio, f">= 4x: {'PASS' if ratio >= 4 else 'MISS'}"),
        (
            "daemon overhead (cold through daemon - engine)",
            overhead,
            f"< 5% and < 1 s: {'PASS' if overhead < min(1.0, 0.05 * best_engine) else 'MISS'}",
        ),
        ("daemon overhead, % of the engine's time", 100 * overhead / best_engine, ""),
    ]
    print(
        f"runs: engine {', '.join(f'{s:.2f}' for s in engine)}; cold {', '.join(f'{s:.2f}' for s in cold)}; "
        f"re-prompt {', '.join(f'{s:.2f}' for s in warm)} (seconds)"
    )
    width = max(len(r[0]) for r in rows)
    for label, value, target in rows:
        print(f"  {label:<{width}}  {value:8.2f}  {target}")
    print(f"median cold {statistics.median(cold):.2f} s, median re-prompt {statistics.median(warm):.2f} s")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
