"""The quality gates of the trained `toyworld` model: does it know its world well enough to judge edits with?

    python benchmarks/bench_toyworld_gates.py [--model toyworld] [--device auto|cpu|cuda] [--quick] [--json PATH]

Three gates, each judged by the world's strict classifier (v2vz.world.measure.read) against the world's truth:
- vae: world clips of every colour/object/background, encoded (posterior mean, the engine's vae_encode="mean") and
  decoded by the engine's own VideoEditPipeline.encode_frames / decode_latents; a frame passes when the object keeps
  its colour class and its centroid stays within 1.5 px. Gate: >= 95% of frames.
- text: diffusers' StableDiffusionPipeline on the model's parts, guidance 7.5, DDIM 50 steps, every caption with
  3 seeds; an image passes when its object's colour and its background are the caption's. Gate: >= 85%.
- identity: VideoEditPipeline.edit with target == source and EditOptions() (50 steps) on 8-frame world clips of
  every combination; a frame passes when the object keeps its colour and its centroid stays within 3 px of the
  source's. Gate: >= 90% of frames.
It reports and exits 0 whatever the gates say. `--quick` runs a few samples of each (a smoke check;
the per-sample times it prints scale to the full run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from v2vz.api.job import EditOptions
from v2vz.world.measure import psnr, read
from v2vz.world.scene import BACKGROUNDS, COLOURS, OBJECTS, WorldClip, caption, parse_caption, world_clip
from v2vz_engine.models import load_model, resolve_device, text_to_image
from v2vz_engine.pipeline import VideoEditPipeline

CAPTIONS = [caption(*words) for words in itertools.product(COLOURS, OBJECTS, BACKGROUNDS)]  # all 24 combinations

VAE_GATE, VAE_CENTROID_PX = 0.95, 1.5
TEXT_GATE, TEXT_GUIDANCE, TEXT_STEPS = 0.85, 7.5, 50
IDENTITY_GATE, IDENTITY_CENTROID_PX, IDENTITY_FRAMES = 0.90, 3.0, 8


@dataclass
class Gate:
    """One gate's verdict and the figures behind it."""

    name: str
    what: str  # what the measured share counts
    measured: float
    gate: float
    seconds: float = 0.0  # the section's run time, the model's load included
    load_seconds: float = 0.0
    figures: dict[str, float | int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.measured >= self.gate

    def report(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"{self.name}: {self.measured:.1%} {self.what} (gate >= {self.gate:.0%}) {verdict}"]
        lines += [f"  {key}: {_format(key, value)}" for key, value in self.figures.items()]
        lines.append(f"  run time: {self.seconds:.1f} s (model load {self.load_seconds:.1f} s)")
        return "\n".join(lines)


def _format(key: str, value: float | int) -> str:
    """Counts as they are, figures with a unit (px, dB) to 2 decimals, shares in percent."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if key.endswith(("px", "dB")) else f"{value:.1%}"


@dataclass
class Readings:
    """Per picture: colour, background and shape right; for a picture of a source frame, the distance of the object's
    centroid from the source's (px) and the PSNR against it."""

    colour: list[bool] = field(default_factory=list)
    background: list[bool] = field(default_factory=list)
    shape: list[bool] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)

    def add(self, picture: np.ndarray, truth: str, source: np.ndarray | None = None) -> None:
        """Judge `picture` against the caption `truth` and, when given, the frame it was made from."""
        colour, object_, background = parse_caption(truth)
        reading = read(picture)
        self.colour.append(reading.colour == colour)
        self.background.append(reading.background == background)
        self.shape.append(reading.object == object_)
        if source is not None:
            distance = float(np.hypot(*np.subtract(reading.centroid, read(source).centroid)))
            self.error.append(distance if np.isfinite(distance) else float("inf"))  # no object read: lost
            self.quality.append(psnr(picture, source))

    def shares(self) -> dict[str, float | int]:
        figures: dict[str, float | int] = {
            "pictures": len(self.colour),
            "colour right": float(np.mean(self.colour)),
            "background right": float(np.mean(self.background)),
            "shape right": float(np.mean(self.shape)),
        }
        if self.error:
            # "higher": no interpolation, which would turn two lost objects (inf) into NaN
            figures["centroid error median, px"] = float(np.percentile(self.error, 50, method="higher"))
            figures["centroid error p95, px"] = float(np.percentile(self.error, 95, method="higher"))
            figures["psnr median, dB"] = float(np.median(self.quality))
        return figures

    def kept(self, pixels: float) -> np.ndarray:
        """Per frame: the object kept its colour and its centroid moved at most `pixels`."""
        return np.asarray(self.colour) & (np.asarray(self.error) <= pixels)


def clips(captions: list[str], seeds: int, frames: int) -> list[tuple[str, WorldClip]]:
    """(caption, WorldClip) for every caption and seed."""
    return [(text, world_clip(text, frames, seed)) for seed in range(seeds) for text in captions]


def section(measure: Callable[..., Gate]) -> Callable[..., Gate]:
    """A gate's section: loads the model afresh (an edit patches the UNet's norms and attention for its clip, which
    text-to-image must not see), times it all and prints the report."""

    def run(spec: str, device: str, *args: object) -> Gate:
        start = time.perf_counter()
        pipeline = VideoEditPipeline(load_model(spec, device))
        loaded = time.perf_counter()
        gate = measure(pipeline, *args)
        gate.seconds, gate.load_seconds = time.perf_counter() - start, loaded - start
        print(gate.report(), flush=True)
        return gate

    return run


def frame_gate(name: str, readings: Readings, pixels: float, gate: float, **figures: float | int) -> Gate:
    """The gate of frames made from source frames: colour kept and centroid within `pixels`."""
    shares = readings.shares() | {
        f"centroid within {pixels} px (share)": float(np.mean(np.asarray(readings.error) <= pixels))
    }
    what = f"of frames keep colour and centroid within {pixels} px"
    return Gate(name, what, float(np.mean(readings.kept(pixels))), gate, figures=shares | figures)


@section
def vae_gate(pipeline: VideoEditPipeline, seeds: int, frames: int) -> Gate:
    """Round trips of world clips through the engine's encode (posterior mean) and decode."""
    options = EditOptions(vae_encode="mean")
    readings = Readings()
    for text, clip in clips(CAPTIONS, seeds, frames):
        decoded = pipeline.decode_latents(pipeline.encode_frames(clip.frames, options))
        for picture, source in zip(decoded, clip.frames, strict=True):
            readings.add(picture, text, source)
    return frame_gate("vae", readings, VAE_CENTROID_PX, VAE_GATE)


@section
def text_gate(pipeline: VideoEditPipeline, seeds: int, captions: list[str]) -> Gate:
    """Text-to-image with diffusers' own pipeline on the model's parts, one seeded generator per image."""
    model = pipeline.model
    sampler = text_to_image(model)
    readings = Readings()
    for seed in range(seeds):
        latents = sampler(
            captions,
            height=model.native_size,
            width=model.native_size,
            num_inference_steps=TEXT_STEPS,
            guidance_scale=TEXT_GUIDANCE,
            generator=[torch.Generator().manual_seed(seed) for _ in captions],
            output_type="latent",
        ).images
        for picture, text in zip(pipeline.decode_latents(latents), captions, strict=True):  # the VAE in float32
            readings.add(picture, text)
    right = np.asarray(readings.colour) & np.asarray(readings.background)
    return Gate(
        "text",
        "of images with colour and background right",
        float(np.mean(right)),
        TEXT_GATE,
        figures=readings.shares(),
    )


@section
def identity_gate(pipeline: VideoEditPipeline, captions: list[str]) -> Gate:
    """Edits with target == source at the default options: the object must stay what and where it was."""
    options = EditOptions()
    readings = Readings()
    for text, clip in clips(captions, 1, IDENTITY_FRAMES):
        edited = pipeline.edit(clip.frames, text, text, options).frames
        for picture, source in zip(edited, clip.frames, strict=True):
            readings.add(picture, text, source)
    return frame_gate(
        "identity", readings, IDENTITY_CENTROID_PX, IDENTITY_GATE, clips=len(captions), steps=options.steps
    )


def _finite(value: object) -> object:
    """The record with null for inf/NaN (a lost object's centroid error), so any JSON reader takes it."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return None if isinstance(value, float) and not np.isfinite(value) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toyworld", help="a built-in name or a diffusers folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="a few samples of each gate: a smoke check")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.device = str(resolve_device(args.device))
    # Full: 24 combinations x 4 seeds x 4 frames = 384 frames; 24 x 3 seeds = 72 images; 24 clips of 8 frames.
    # Quick: 48 frames; 5 images; 2 clips (the same steps, so its per-sample times scale to the full run).
    seeds, frames, captions = (1, 2, CAPTIONS[::5]) if args.quick else (4, 4, CAPTIONS)
    print(f"toyworld gates of {args.model} on {args.device}{' (quick)' if args.quick else ''}", flush=True)
    gates = [
        vae_gate(args.model, args.device, seeds, frames),
        text_gate(args.model, args.device, 1 if args.quick else 3, captions),
        identity_gate(args.model, args.device, captions[:2] if args.quick else captions),
    ]
    print(f"gates passed: {sum(gate.passed for gate in gates)}/{len(gates)}")
    if args.json:
        record = {"model": args.model, "device": args.device, "quick": args.quick}
        record["gates"] = {gate.name: asdict(gate) | {"passed": gate.passed} for gate in gates}
        args.json.write_text(json.dumps(_finite(record), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
