"""FlowEdit's latent windows: is there a seam where two windows overlap, and what does a re-prompt cost?

    python benchmarks/bench_flowedit_windows.py [--model tiny-wan] [--frames 49] [--window 25] [--steps 10]
        [--size 64] [--device cpu]

A clip of the toy world (a red ball rolling over green grass, v2vz.world) is edited with FlowEdit through run_job
twice: in latent windows of --window frames (overlapping by 4 latent frames, blended at every step) and whole (one
window). Figures, on the edited frames at the working size (mean absolute difference, 0..255, between neighbouring
frames): "in overlaps" averages the steps between frames that windows share, "elsewhere" the rest, and their ratio
says whether an overlap is visible (1.0: it looks like any other frame step); the same ratio for the whole edit and
for the source frames gives the baseline (motion is not uniform). "vs whole" is the windowed edit's mean absolute
difference from the whole one. Then a cold edit and a re-prompt (another target, the same frames) of the whole clip,
timed one after the other in this process: FlowEdit caches nothing, so the re-prompt costs what the cold edit costs.
Random weights (tiny-wan): the edit is noise, and these figures say whether the blending leaves seams, not whether
an edit looks good.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from v2vz.api.job import EditJob, EditOptions
from v2vz.cli.sample import make_world_clip
from v2vz_engine import media
from v2vz_engine.flowedit_editor import OVERLAP_LATENTS, latent_windows
from v2vz_engine.methods import load_editor
from v2vz_engine.run import run_job

SOURCE, TARGET, RETARGET = "a red ball on green grass", "a blue ball on green grass", "a yellow ball on green grass"


def overlap_frames(frames: int, window: int) -> set[int]:
    """The frames (indices of the clip, padded to 4k+1) that two latent windows share."""
    latent = (frames - 1) // 4 + 1 + (0 if (frames - 1) % 4 == 0 else 1)
    windows = latent_windows(latent, (window - 1) // 4 + 1, OVERLAP_LATENTS)
    shared: set[int] = set()
    for first, second in zip(windows, windows[1:], strict=False):
        for latent_frame in range(second.start, first.stop):
            shared |= {0} if latent_frame == 0 else set(range(4 * latent_frame - 3, 4 * latent_frame + 1))
    return {frame for frame in shared if frame < frames}


def jumps(frames: np.ndarray, shared: set[int]) -> tuple[float, float]:
    steps = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    inside = [float(steps[k - 1]) for k in range(1, len(frames)) if k in shared and k - 1 in shared]
    outside = [float(steps[k - 1]) for k in range(1, len(frames)) if k not in shared or k - 1 not in shared]
    return float(np.mean(inside)), float(np.mean(outside))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-wan")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--window", type=int, default=25)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-flowedit-"))
    clip = work / "world.mp4"
    make_world_clip(clip, SOURCE, frames=args.frames, seed=3)
    editor = load_editor(args.model, args.device)
    options = EditOptions().replace(method="flowedit", steps=args.steps, size=args.size)
    job = EditJob(str(clip), TARGET, SOURCE, frames=args.frames, options=options, model=args.model)
    results = {}
    for name, window in (("windowed", args.window), ("whole", 0)):
        chosen = dataclasses.replace(job, options=options.replace(window=window or args.frames + 3))
        chosen = dataclasses.replace(chosen, out_frames_dir=work / name)
        began = time.perf_counter()
        result = run_job(chosen, editor)
        seconds = time.perf_counter() - began
        pngs = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in result.frame_paths])
        edited = media.resize_frames(pngs, *result.working_size)
        results[name] = (edited, seconds)
    shared = overlap_frames(args.frames, args.window)
    source, _ = media.read_frames(clip, 0, args.frames)
    source = media.resize_frames(source, *results["whole"][0].shape[2:0:-1])
    print(
        f"FlowEdit latent windows, {args.model}, {args.frames} frames, windows of {args.window} frames, "
        f"{args.steps} steps, {len(shared)} frames in overlaps ({sys.platform}, {args.device})"
    )
    print(f"{'edit':<10} {'in overlaps':>12} {'elsewhere':>10} {'ratio':>7} {'vs whole':>9} {'seconds':>8}")
    for name, frames in (("source", source), ("windowed", results["windowed"][0]), ("whole", results["whole"][0])):
        inside, outside = jumps(frames, shared)
        versus = float(np.abs(frames.astype(np.float32) - results["whole"][0].astype(np.float32)).mean())
        seconds = results[name][1] if name in results else float("nan")
        print(f"{name:<10} {inside:>12.2f} {outside:>10.2f} {inside / outside:>7.2f} {versus:>9.2f} {seconds:>8.2f}")
    cold = dataclasses.replace(job, options=options.replace(window=args.frames + 3), out_frames_dir=work / "cold")
    began = time.perf_counter()
    run_job(cold, editor)
    cold_s = time.perf_counter() - began
    again = dataclasses.replace(cold, prompt=RETARGET, out_frames_dir=work / "again")
    began = time.perf_counter()
    run_job(again, editor)
    again_s = time.perf_counter() - began
    print(f"cold edit {cold_s:.2f} s, re-prompt {again_s:.2f} s: re-prompt / cold = {again_s / cold_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
