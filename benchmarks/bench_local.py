"""What a local edit costs: the edit stage with a matte, with `--edit-only` words, with `--self-replace`, against the
same edit of the whole frame.

    python benchmarks/bench_local.py [--device auto|cpu|cuda] [--models tiny,sd15-random] [--runs 5]
                                     [--frames 8] [--steps 20] [--tiny-size 64] [--sd15-size 128]

The inversion is made once and reused (the local options are not part of it, so a local re-prompt is what an
editor repeats); each run times `pipeline.sample` (both branches, all steps) and then the decode, as run_job does.
The variants of one run follow one another and runs repeat `--runs` times in a rotating order; the figures are the
medians, and the ratios are variant / whole frame, measured in this one run. Targets (issue 25): a masked edit at
most 1.05x, `--self-replace` at most 1.10x. The memory self-replacement adds is computed for SD 1.5 at 512x512 and
16 frames (its coarse layers' queries and keys of one group, one layer at a time: no probabilities are stored) and,
on a GPU, measured as the peak over the whole-frame edit's.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from v2vz.api.job import EditOptions
from v2vz_engine import media
from v2vz_engine.models import SD15, load_model
from v2vz_engine.pipeline import Region, VideoEditPipeline
from v2vz_engine.self_replace import COARSE_SHARE

CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips" / "bigbuckbunny.mp4"
SOURCE, TARGET = "a rabbit on the grass", "a tiger on the grass"
TARGETS = {"matte": 1.05, "edit-only": 1.05, "matte+edit-only": 1.05, "self-replace 0.4": 1.10}


def variants(frames: int, size: tuple[int, int]) -> dict[str, tuple[EditOptions, np.ndarray | None]]:
    width, height = size
    matte = np.zeros((frames, height, width), np.float32)
    matte[:, :, width // 4 : 3 * width // 4] = 1
    return {
        "whole frame": ({}, None),
        "matte": ({}, matte),
        "edit-only": ({"edit_only": "tiger"}, None),
        "matte+edit-only": ({"edit_only": "tiger"}, matte),
        "self-replace 0.4": ({"self_replace": 0.4}, None),
    }


def timed(pipeline: VideoEditPipeline, inversion, options: EditOptions, region: Region) -> float:
    began = time.perf_counter()
    sampled = pipeline.sample(inversion, SOURCE, TARGET, options, region=region)
    pipeline.decode_latents(sampled.latents)
    if pipeline.model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def bench_model(name: str, long_side: int, args: argparse.Namespace) -> dict[str, float]:
    pipeline = VideoEditPipeline(load_model(name, args.device, args.cache_dir))
    frames, _ = media.read_frames(CLIP, 60, args.frames)
    width, height = media.working_size(frames.shape[2], frames.shape[1], long_side)
    frames = media.resize_frames(frames, width, height)
    base = EditOptions(steps=args.steps, size=long_side)
    inversion, _ = pipeline.invert(pipeline.encode_frames(frames, base), SOURCE, base)
    cases = variants(args.frames, (width, height))
    indices = tuple(range(args.frames))
    prepared = {label: (base.replace(**changes), Region(indices, matte)) for label, (changes, matte) in cases.items()}
    for options, region in prepared.values():  # first-call costs out of the way
        timed(pipeline, inversion, options, region)
    seconds: dict[str, list[float]] = {label: [] for label in prepared}
    labels = list(prepared)
    for run in range(args.runs):
        for label in labels[run % len(labels) :] + labels[: run % len(labels)]:
            seconds[label].append(timed(pipeline, inversion, *prepared[label]))
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    print(f"\n{name}: {args.frames} frames at {width}x{height}, {args.steps} steps, direct inversion, {args.runs} runs")
    print(f"  {'variant':<18} {'median s':>9} {'ratio':>7} {'target':>7}")
    whole = medians["whole frame"]
    for label, value in medians.items():
        target = f"{TARGETS[label]:.2f}x" if label in TARGETS else ""
        print(f"  {label:<18} {value:9.3f} {value / whole:6.3f}x {target:>7}")
    if pipeline.model.device.type == "cuda":
        peak_memory(pipeline, inversion, prepared)
    return medians


def peak_memory(pipeline: VideoEditPipeline, inversion, prepared) -> None:
    peaks = {}
    for label in ("whole frame", "self-replace 0.4"):
        torch.cuda.reset_peak_memory_stats()
        timed(pipeline, inversion, *prepared[label])
        peaks[label] = torch.cuda.max_memory_allocated()
    added = peaks["self-replace 0.4"] - peaks["whole frame"]
    print(
        f"  peak memory: whole frame {peaks['whole frame'] / 2**30:.2f} GiB, self-replace adds {added / 2**20:.1f} MiB"
    )


def self_replace_memory(frames: int = 16, side: int = 512, dtype_bytes: int = 2) -> None:
    """The most self-replacement holds at once in SD 1.5: one coarse layer's queries and keys of one group copied."""
    latent = side // 8
    coarse = [(latent // 4, SD15.unet_channels[2]), (latent // 8, SD15.unet_channels[3])]  # 16x16 x1280, 8x8 x1280
    worst = max(2 * frames * (level * level) * channels * dtype_bytes for level, channels in coarse)
    # The query and key tensors of the whole batch are re-made with the last group replaced (torch.cat): 3 groups.
    held = 3 * worst
    print(
        f"\nself-replace memory, SD 1.5 at {side}x{side}, {frames} frames, fp16: layers of at most 1/{COARSE_SHARE} "
        f"of the latent's tokens; one layer's q and k at a time: {held / 2**20:.1f} MiB, no probabilities stored "
        f"(the dense probabilities of that layer would be {3 * 8 * (frames * 256) ** 2 * dtype_bytes / 2**30:.1f} GiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="tiny,sd15-random")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny-size", type=int, default=64)
    parser.add_argument("--sd15-size", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.models.split(","):
        bench_model(name, args.tiny_size if name == "tiny" else args.sd15_size, args)
    self_replace_memory()


if __name__ == "__main__":
    main()
