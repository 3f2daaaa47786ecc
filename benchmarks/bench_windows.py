"""Windowed editing of long clips: peak memory and time per frame against clip length, and the time to the first frame.

    python benchmarks/bench_windows.py [--models tiny,sd15-random] [--lengths 16,32,64,128] [--device auto|cpu|cuda]

Every (model, length) runs `run_job` in a fresh child process on a synthetic clip (64x64 by default, so the working
size is the clip's own), windows of --window frames with --anchors tail anchors, PNG frames and an MP4 written as a
real job does. After loading the model and a warm-up job the child takes its memory baseline, then runs the job:
- peak memory: on CUDA torch.cuda.max_memory_allocated() minus the allocated baseline; on the CPU the process's
  resident high-water mark (VmHWM, reset to the current RSS through /proc/self/clear_refs) minus the RSS baseline,
  with glibc's mmap threshold at 64 KiB so that freed tensors leave the resident set (RSS follows live memory);
- time per frame: the job's wall time / frames; time to first frame: from the job's start until the first PNG is
  announced (on_frame), i.e. when a plugin can put it on the timeline.
Targets (issue 7): peak at the longest length within 15% of the shortest; time per frame within 20% across lengths;
the first frames on disk before a third of the whole edit's time for 64 frames.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import (  # noqa: E402 - a sibling script, not a package
    Report,
    _proc_status_kib,
    _reset_peak_rss,
    fmt_bytes,
    fmt_s,
    others_during,
    print_environment,
    verdict,
)

SOURCE_PROMPT = "a red ball on green grass"
TARGET_PROMPT = "a blue ball on green grass"
TARGET_PEAK_RATIO = 1.15
TARGET_TIME_SPREAD = 1.20
TARGET_FIRST_SHARE = 1 / 3
FIRST_SHARE_FRAMES = 64


def child(spec: dict) -> dict:
    """One measured job in this (fresh) process; returns its figures."""
    from v2vz.api.job import EditJob, EditOptions
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline
    from v2vz_engine.run import run_job

    device = torch.device(spec["device"])
    pipeline = VideoEditPipeline(load_model(spec["model"], spec["device"], Path(spec["cache_dir"])))
    options = EditOptions(
        steps=spec["steps"],
        size=spec["size"],
        window=spec["window"],
        anchors=spec["anchors"],
        inversion="null-text",  # the figures in docs/benchmarks.md
        null_inner_steps=1,
    )
    out = Path(spec["out"])

    def job(frames: int, name: str, steps: int | None = None) -> EditJob:
        return EditJob(
            source=Path(spec["clip"]),
            prompt=TARGET_PROMPT,
            source_prompt=SOURCE_PROMPT,
            frames=frames,
            options=options.replace(steps=steps) if steps else options,
            output=out / f"{name}.mp4" if spec["mp4"] else None,
            out_frames_dir=out / name,
            model=spec["model"],
        )

    run_job(job(min(spec["window"] + 2, spec["frames"]), "warm-up", steps=1), pipeline)  # a window with anchors
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        _reset_peak_rss()
        base = _proc_status_kib("VmRSS") * 1024
    first: list[float] = []
    start = time.perf_counter()
    result = run_job(
        job(spec["frames"], "run"), pipeline, on_frame=lambda *_: first or first.append(time.perf_counter())
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _proc_status_kib("VmHWM") * 1024 - base
    return {
        "total": total,
        "first": first[0] - start,
        "peak": peak,
        "windows": len(result.windows),
        "frames": len(result.frame_paths),
        "timings": result.timings,
    }


def run_child(spec: dict) -> dict:
    # Large blocks straight from mmap, so freed tensors leave the resident set at once and RSS follows live memory
    # (glibc otherwise keeps freed heap, and the high-water mark drifts with fragmentation rather than use).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {spec['model']} x {spec['frames']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,sd15-random")
    parser.add_argument("--lengths", default="16,32,64,128")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=64, help="clip and working size (square)")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--anchors", type=int, default=2)
    parser.add_argument("--tiny-steps", type=int, default=10)
    parser.add_argument("--sd15-steps", type=int, default=3, help="sd15-random steps (3 keeps a CPU run in minutes)")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_CACHE", "~/.cache/v2vz")))
    parser.add_argument("--no-mp4", action="store_true", help="PNG frames only (no H.264 encoder buffers)")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    from v2vz.cli.sample import make_sample_clip

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    args.cache_dir = args.cache_dir.expanduser()
    args.quick = False
    report = Report(args.plain)
    print_environment(report, device, args)
    lengths = [int(n) for n in args.lengths.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="v2vz-bench-windows-"))
    clip = make_sample_clip(workdir / "clip.mp4", frames=max(lengths), width=args.size, height=args.size)
    all_ok = True
    for model in args.models.split(","):
        steps = args.tiny_steps if model == "tiny" else args.sd15_steps
        report.heading(
            f"{model}: {args.size}x{args.size}, {steps} steps, null-text 1 inner step, window {args.window}, "
            f"anchors first + {args.anchors}, {'PNG' if args.no_mp4 else 'PNG + MP4'} out, {device}"
        )
        rows, results = [], {}
        with others_during(report, model):
            for frames in lengths:
                spec = {
                    "model": model,
                    "device": str(device),
                    "cache_dir": str(args.cache_dir),
                    "clip": str(clip),
                    "frames": frames,
                    "size": args.size,
                    "steps": steps,
                    "window": args.window,
                    "anchors": args.anchors,
                    "out": str(workdir / f"{model}-{frames}"),
                    "mp4": not args.no_mp4,
                }
                result = results[frames] = run_child(spec)
                assert result["frames"] == frames, result
                rows.append(
                    [
                        frames,
                        result["windows"],
                        fmt_s(result["total"], 1),
                        fmt_s(result["total"] / frames, 3),
                        fmt_s(result["first"], 1),
                        f"{100 * result['first'] / result['total']:.0f}%",
                        fmt_bytes(result["peak"]),
                    ]
                )
                report.line(f"  {frames} frames: {json.dumps({k: v for k, v in result.items() if k != 'timings'})}")
        report.table(
            None,
            ["frames", "windows", "total s", "s / frame", "first frame s", "first / total", "peak memory"],
            rows,
            right=set(range(7)),
        )
        shortest, longest = results[min(lengths)], results[max(lengths)]
        peak_ratio = longest["peak"] / shortest["peak"] if shortest["peak"] > 0 else float("inf")
        per_frame = [results[n]["total"] / n for n in lengths]
        spread = max(per_frame) / min(per_frame)
        checks = [
            (
                f"peak {max(lengths)} / peak {min(lengths)} frames",
                f"{peak_ratio:.3f}",
                f"<= {TARGET_PEAK_RATIO}",
                peak_ratio <= TARGET_PEAK_RATIO,
            ),
            (
                "time per frame, slowest / fastest length",
                f"{spread:.3f}",
                f"<= {TARGET_TIME_SPREAD}",
                spread <= TARGET_TIME_SPREAD,
            ),
        ]
        if FIRST_SHARE_FRAMES in results:
            share = results[FIRST_SHARE_FRAMES]["first"] / results[FIRST_SHARE_FRAMES]["total"]
            checks.append(
                (
                    f"first frame / whole edit, {FIRST_SHARE_FRAMES} frames",
                    f"{share:.3f}",
                    f"< {TARGET_FIRST_SHARE:.3f}",
                    share < TARGET_FIRST_SHARE,
                )
            )
        report.table(None, ["target", "measured", "wanted", ""], [[*c[:3], verdict(c[3])] for c in checks])
        all_ok &= all(c[3] for c in checks)
    report.line(
        "peak memory: "
        + (
            "torch.cuda.max_memory_allocated - allocated baseline"
            if device.type == "cuda"
            else "VmHWM (reset via /proc/self/clear_refs) - VmRSS baseline, after model load and warm-up"
        )
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
