"""Edit quality in the toy world: does an edit reach its target, and does it keep what it should keep?

    python benchmarks/bench_quality.py [--model toyworld] [--device auto|cpu|cuda] [--steps 50] [--clips 12]
        [--rows GROUPS_OR_ROWS] [--long-clips 3] [--threads N] [--json PATH] [--markdown] [--base FIELD=VALUE,...]

Why: an edit's quality can only be measured where the truth is known. Every clip here is drawn by v2vz.world
(`world_clip`, fixed seeds: 8 frames, colours, objects and backgrounds spread over the clips, every other three with a
camera pan), so each frame comes with its object's mask and centroid, and `v2vz.world.measure.read` (a strict
classifier) says what an edited frame shows. Each clip is edited three ways, the target caption differing from the
clip's own in one place: the object's colour (red -> blue, blue -> yellow, ...), the background (green grass ->
white snow -> grey road -> green grass) and the object's shape (ball <-> box).

Rows are variants of EditOptions (or of how the job runs); each row edits every clip three ways:
- baseline: "ideal" (the target clip as the world renders it: no model; the metrics' own ceiling), "reconstruction"
  (the target caption is the source's: what the model keeps of a clip it is not asked to change).
- inversion: direct (our default), null-text (the published method), negative-prompt.
- attention: dense (default), published, sparse_causal, per_frame.
- regularization: cross-replace-0 (cross_replace = refine_cross_replace = 0) vs cross-replace-0.8 (the default).
- self-replace: 0 / 0.2 / 0.4 / 0.6.
- local: whole-frame vs edit-only (the words the edit changes, both prompts': "red blue", "green grass white snow",
  "ball box") vs matte (the source's truth object mask for the colour and shape edits; its complement, the
  background's truth, for the background edit): the local edit as run_job makes it, composited over the source.
- guidance: 2 / 5 / 7.5.
- groupnorm: ResNet GroupNorm statistics over the clip (joint_groupnorm, the published 3-D UNet's) vs per frame, and
  per frame with guidance 2 and 5.
- long: --long-clips clips of 48 frames (--long-frames) through run_job (a PNG folder in, the PNG frames back):
  long-whole (window 48) vs long-chained and long-anchored (windows of 8, --long-window).
`--base joint_groupnorm=false` (any options, as a sidecar writes them) makes every row start from those options
instead of the defaults: the table of another default.
Rows whose options and region are the same (dense, direct, whole-frame, ...) share their edits: each is run once.
The inversion is made once per clip and inversion settings (pipeline.invert) and reused by every row it serves.

Figures per row (means over clips; "per edit" means per clip and edit kind):
- reached colour / background / shape: share of frames that read(edited frame) gives the target's colour (colour
  edit), background (background edit), object (shape edit); "reached" is their mean; "caption" is the share of
  frames, over all three edits, that read as the whole target caption (the other two attributes kept too).
- centroid px: distance between the read object's centroid and the source's truth centroid (frames where an object
  is read; the share of frames with none shows in "reached"), all three edits.
- IoU: read(edited).mask vs the source's truth mask, colour and background edits (a shape edit changes the mask).
- bg PSNR dB: PSNR of the edited frames vs the source frames outside the object (the source's truth mask joined with
  the target's, which differ for ball <-> box), colour and shape edits (they should leave the background alone);
  pooled as the PSNR of the mean squared error over edits (an edit that leaves it exactly gives inf).
- temporal: mean absolute frame-to-frame change of the edit divided by the source's (1: as steady as the source).
- seam (long rows): the jump at window seams over the jump inside windows, divided by the source's same ratio
  (bench_window_links.figures; the seams of windows of --long-window, also for long-whole, which has none: its
  value is what the content alone gives).
- invert s: seconds per inversion (encode included); edit s: seconds per edit (both branches, all steps, decode);
  long rows: seconds per run_job (its inversions, edits and PNG writing).
Poor model pictures give poor figures: the classifier is strict on purpose, and its thresholds were set on rendered
pictures, never on model outputs. Deterministic: fixed clip seeds and EditOptions.seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from v2vz.api.runtime_env import prepare_environment

prepare_environment()  # as the `v2vz` command does, before torch loads: the short OpenMP spin, the thread count

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import cpu_model  # noqa: E402 - a sibling script
from bench_window_links import figures as seam_figures  # noqa: E402
from bench_window_links import pair_jumps  # noqa: E402

from v2vz.api.job import EditJob, EditOptions  # noqa: E402
from v2vz.world.measure import iou, psnr, read  # noqa: E402
from v2vz.world.scene import BACKGROUNDS, COLOURS, OBJECTS, WORLD_SIZE, WorldClip, parse_caption, world_clip  # noqa: E402
from v2vz_engine.cpu import apply_cpu_threads  # noqa: E402
from v2vz_engine.local_edit import composite, upsample  # noqa: E402
from v2vz_engine.models import load_model  # noqa: E402
from v2vz_engine.pipeline import Region, VideoEditPipeline  # noqa: E402
from v2vz_engine.run import run_job  # noqa: E402
from v2vz_engine.windows import plan_windows  # noqa: E402

KINDS = ("colour", "background", "shape")
ATTRIBUTE = {"colour": "colour", "background": "background", "shape": "object"}  # Scene/Reading field per kind
FRAMES = 8
CLIPS = 12
PAN = 1.0  # world pixels a frame, for the clips that pan
LONG_FRAMES, LONG_WINDOW, LONG_CLIPS = 48, 8, 3
GROUPS = (
    "baseline",
    "inversion",
    "attention",
    "regularization",
    "self-replace",
    "local",
    "guidance",
    "groupnorm",
    "long",
)
CALIBRATION_STEPS, CALIBRATION_FRAMES = 2, 4  # costs scale with frames x steps: a short run tells them


# ---------------------------------------------------------------------------------------------------------------
# The clips and their edits


@dataclass(frozen=True)
class ClipSpec:
    """One clip of the set: its caption, seed and pan; the target caption of each edit kind."""

    caption: str
    seed: int
    pan: float

    def source(self, frames: int) -> WorldClip:
        return world_clip(self.caption, frames, self.seed, pan=self.pan)

    def target_caption(self, kind: str) -> str:
        colour, object_, background = parse_caption(self.caption)
        if kind == "colour":
            colour = _next(list(COLOURS), colour)
        elif kind == "background":
            background = _next(list(BACKGROUNDS), background)
        else:
            object_ = _next(list(OBJECTS), object_)
        return f"a {colour} {object_} on {background}"

    def target(self, kind: str, frames: int) -> WorldClip:
        """The ideal edit: the same seed draws the same path, size and grain whatever the caption says."""
        return world_clip(self.target_caption(kind), frames, self.seed, pan=self.pan)

    def changed_words(self, kind: str) -> str:
        """The words an edit of `kind` changes, in both prompts (what --edit-only names for it)."""
        source, target = parse_caption(self.caption), parse_caption(self.target_caption(kind))
        slot = ("colour", "shape", "background").index(kind)
        return f"{source[slot]} {target[slot]}"


def _next(names: list[str], name: str) -> str:
    return names[(names.index(name) + 1) % len(names)]


def clip_specs(count: int = CLIPS) -> list[ClipSpec]:
    """The fixed set: clip i has colour i % 4 and background i % 3 (12 clips: every pair), both objects for every
    colour, and a pan on clips 3..5, 9..11 (every background once with and once without)."""
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
    specs = []
    for i in range(count):
        object_ = OBJECTS[(i + i // 4) % len(OBJECTS)]
        caption = f"a {colours[i % len(colours)]} {object_} on {backgrounds[i % len(backgrounds)]}"
        specs.append(ClipSpec(caption, 100 + i, PAN if (i // 3) % 2 else 0.0))
    return specs


# ---------------------------------------------------------------------------------------------------------------
# The metrics


def temporal_change(frames: np.ndarray) -> float:
    """Mean absolute frame-to-frame change (0..255) over the clip."""
    return float(pair_jumps(frames).mean()) if len(frames) > 1 else 0.0


def measure(edited: np.ndarray, source: WorldClip, target: WorldClip, kind: str) -> dict[str, Any]:
    """The figures of one edit (uint8 (F, H, W, 3) at the world's size) against the source's and target's truth."""
    readings = [read(frame) for frame in edited]
    want = target.scenes[0]
    attribute = ATTRIBUTE[kind]
    truth = source.centroids
    errors = [
        math.hypot(r.centroid[0] - x, r.centroid[1] - y)
        for r, (x, y) in zip(readings, truth, strict=True)
        if not math.isnan(r.centroid[0])
    ]
    figures: dict[str, Any] = {
        "reached": float(np.mean([getattr(r, attribute) == getattr(want, attribute) for r in readings])),
        "caption": float(
            np.mean(
                [(r.colour, r.object, r.background) == (want.colour, want.object, want.background) for r in readings]
            )
        ),
        "centroid_px": float(np.mean(errors)) if errors else float("nan"),
        "found": len(errors) / len(readings),
        "iou": None,
        "bg_psnr_db": None,
        "temporal": _ratio(temporal_change(edited), temporal_change(source.frames)),
        # the ideal edit's own change differs from the source's (the object's contrast with a new background):
        "temporal_ideal": _ratio(temporal_change(edited), temporal_change(target.frames)),
    }
    if kind != "shape":
        figures["iou"] = float(np.mean([iou(r.mask, m) for r, m in zip(readings, source.masks, strict=True)]))
    if kind != "background":
        figures["bg_psnr_db"] = psnr(edited, source.frames, where=~(source.masks | target.masks))
    return figures


def _ratio(value: float, reference: float) -> float:
    if reference > 0:
        return value / reference
    return 1.0 if value == 0 else float("inf")


def mean_psnr(values: Iterable[float]) -> float:
    """PSNR of the mean squared error of several PSNRs (inf: every one was exact)."""
    errors = [0.0 if math.isinf(v) else 255.0**2 / 10 ** (v / 10) for v in values]
    if not errors:
        return float("nan")
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def summarize(edits: list[dict[str, Any]]) -> dict[str, Any]:
    """A row's figures from its edits (each: kind, the measure() figures, seconds; seam for long rows)."""

    def mean(key: str, kinds: tuple[str, ...] = KINDS) -> float:
        values = [e[key] for e in edits if e["kind"] in kinds and e.get(key) is not None]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    reached = {kind: mean("reached", (kind,)) for kind in KINDS}
    present = [v for v in reached.values() if not math.isnan(v)]
    return {
        "reached": reached,
        "reached_overall": float(np.mean(present)) if present else float("nan"),
        "caption": mean("caption"),
        "centroid_px": mean("centroid_px"),
        "found": mean("found"),
        "iou": mean("iou", ("colour", "background")),
        "bg_psnr_db": mean_psnr(e["bg_psnr_db"] for e in edits if e.get("bg_psnr_db") is not None),
        "temporal": mean("temporal"),
        "temporal_ideal": mean("temporal_ideal"),
        "seam": mean("seam"),
        "invert_s": mean("invert_s"),
        "edit_s": mean("edit_s"),
        "edits": len(edits),
    }


# ---------------------------------------------------------------------------------------------------------------
# The rows


@dataclass(frozen=True)
class Row:
    """One line of the table: options over the base, and how the job is run."""

    name: str
    group: str
    changes: dict[str, Any] = field(default_factory=dict)
    local: str = ""  # "words" (edit_only: the changed words), "matte" (the truth mask), "" (whole frame)
    long: str = ""  # "whole", "chained", "anchored": a long clip through run_job
    ideal: bool = False  # the world's own rendering of the target: no model
    reconstruct: bool = False  # the target caption is the source's

    def options(self, base: EditOptions, spec: ClipSpec, kind: str) -> EditOptions:
        options = base.replace(**self.changes)
        if self.local == "words":
            options = options.replace(edit_only=spec.changed_words(kind))
        return options


ROWS: tuple[Row, ...] = (
    Row("ideal", "baseline", ideal=True),
    Row("reconstruction", "baseline", reconstruct=True),
    Row("direct", "inversion"),
    Row("null-text", "inversion", {"inversion": "null-text"}),
    Row("negative-prompt", "inversion", {"inversion": "negative-prompt"}),
    Row("dense", "attention"),
    Row("published", "attention", {"attention": "published"}),
    Row("sparse_causal", "attention", {"attention": "sparse_causal"}),
    Row("per_frame", "attention", {"attention": "per_frame"}),
    Row("cross-replace-0", "regularization", {"cross_replace": 0.0, "refine_cross_replace": 0.0}),
    Row("cross-replace-0.8", "regularization"),
    *(Row(f"self-replace-{v:g}", "self-replace", {"self_replace": v} if v else {}) for v in (0.0, 0.2, 0.4, 0.6)),
    Row("whole-frame", "local"),
    Row("edit-only", "local", local="words"),
    Row("matte", "local", local="matte"),
    *(Row(f"guidance-{v:g}", "guidance", {"guidance": v} if v != 7.5 else {}) for v in (2.0, 5.0, 7.5)),
    # ResNet GroupNorm statistics over the clip (the published 3-D UNet's) or per frame (what the model was trained
    # with), alone and with the guidance that interacts with it
    Row("joint-groupnorm", "groupnorm"),
    Row("per-frame-groupnorm", "groupnorm", {"joint_groupnorm": False}),
    Row("reconstruction-per-frame-gn", "groupnorm", {"joint_groupnorm": False}, reconstruct=True),
    *(Row(f"guidance-{v:g}-per-frame-gn", "groupnorm", {"joint_groupnorm": False, "guidance": v}) for v in (2.0, 5.0)),
    Row("long-whole", "long", long="whole"),
    Row("long-chained", "long", {"window_links": "chained"}, long="chained"),
    Row("long-anchored", "long", {"window_links": "anchored"}, long="anchored"),
)


def select_rows(text: str) -> list[Row]:
    """Rows named by a comma list of row names and group names ("all": every row), in the table's order."""
    wanted = {word.strip() for word in text.split(",") if word.strip()}
    if "all" in wanted:
        return list(ROWS)
    known = {row.name for row in ROWS} | set(GROUPS)
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown row(s) {', '.join(unknown)}: choose from {', '.join([*GROUPS, *(r.name for r in ROWS)])}"
        )
    return [row for row in ROWS if row.name in wanted or row.group in wanted]


# ---------------------------------------------------------------------------------------------------------------
# Running the edits


@dataclass
class Bench:
    """Edits the clip set for rows, sharing inversions and identical edits across rows."""

    pipeline: VideoEditPipeline
    model: str  # the spec run_job's jobs name (a built-in or a folder)
    steps: int
    specs: list[ClipSpec]
    frames: int = FRAMES
    long_frames: int = LONG_FRAMES
    long_window: int = LONG_WINDOW
    long_clips: int = LONG_CLIPS
    workdir: Path | None = None
    base_changes: dict[str, Any] = field(default_factory=dict)  # --base: options every row starts from
    _clips: dict[tuple[int, str, int], WorldClip] = field(default_factory=dict)
    _inversions: dict[tuple[int, str], tuple[Any, float]] = field(default_factory=dict)
    _edits: dict[tuple, tuple[np.ndarray, float]] = field(default_factory=dict)

    @property
    def base(self) -> EditOptions:
        return EditOptions(steps=self.steps, size=WORLD_SIZE).replace(**self.base_changes)

    def clip(self, index: int, kind: str | None, frames: int) -> WorldClip:
        """The source clip (kind None) or the ideal edit of one kind, made once."""
        key = (index, kind or "", frames)
        if key not in self._clips:
            spec = self.specs[index]
            self._clips[key] = spec.source(frames) if kind is None else spec.target(kind, frames)
        return self._clips[key]

    def inversion(self, index: int, options: EditOptions) -> tuple[Any, float]:
        """The clip's inversion for these options (made once per clip and inversion key) and its seconds."""
        key = (index, json.dumps(options.inversion_key(), sort_keys=True))
        if key not in self._inversions:
            began = time.perf_counter()
            latents = self.pipeline.encode_frames(self.clip(index, None, self.frames).frames, options)
            made, _ = self.pipeline.invert(latents, self.specs[index].caption, options)
            self._inversions[key] = (made, time.perf_counter() - began)
        return self._inversions[key]

    def edit(self, row: Row, index: int, kind: str) -> tuple[np.ndarray, float, float]:
        """(edited frames, seconds of the edit, seconds of its inversion) of one clip, one kind, one row."""
        spec = self.specs[index]
        options = row.options(self.base, spec, kind)
        options.validate()
        target = spec.caption if row.reconstruct else spec.target_caption(kind)
        matte = self.matte(row, index, kind)
        inversion, invert_s = self.inversion(index, options)
        key = (index, target, options, row.local, kind if row.local == "matte" else "")
        if key not in self._edits:
            source = self.clip(index, None, self.frames)
            region = Region(tuple(range(self.frames)), matte) if row.local else None
            began = time.perf_counter()
            sampled = self.pipeline.sample(inversion, spec.caption, target, options, region=region)
            edited = self.pipeline.decode_latents(sampled.latents)
            if row.local:  # as run_job does: the edit over the source's own pixels by matte x word region
                weight = matte if matte is not None else np.ones(edited.shape[:3], np.float32)
                if sampled.region is not None:
                    weight = weight * upsample(sampled.region.cpu().numpy(), edited.shape[2], edited.shape[1])
                edited = composite(edited, source.frames, weight)
            self._edits[key] = (edited, time.perf_counter() - began)
        edited, edit_s = self._edits[key]
        return edited, edit_s, invert_s

    def matte(self, row: Row, index: int, kind: str) -> np.ndarray | None:
        """The truth mask as a matte at the working size: the object's, or for a background edit the background's."""
        if row.local != "matte":
            return None
        masks = self.clip(index, None, self.frames).masks
        return (~masks if kind == "background" else masks).astype(np.float32)

    def run_row(self, row: Row) -> list[dict[str, Any]]:
        """Every edit of a row, measured (long rows: their own clips, through run_job)."""
        if row.long:
            return self.run_long(row)
        edits = []
        for index in range(len(self.specs)):
            source = self.clip(index, None, self.frames)
            for kind in KINDS:
                target = source if row.reconstruct else self.clip(index, kind, self.frames)
                if row.ideal:
                    edited, edit_s, invert_s = self.clip(index, kind, self.frames).frames, None, None
                else:
                    edited, edit_s, invert_s = self.edit(row, index, kind)
                edits.append(
                    {"clip": index, "kind": kind, **measure(edited, source, target, kind)}
                    | {"edit_s": edit_s, "invert_s": invert_s}
                )
        return edits

    def long_options(self, row: Row) -> EditOptions:
        window = self.long_frames if row.long == "whole" else self.long_window
        return self.base.replace(**row.changes).replace(window=window)

    def run_long(self, row: Row) -> list[dict[str, Any]]:
        options = self.long_options(row)
        options.validate()
        seams = plan_windows(self.long_frames, self.long_window)
        edits = []
        for index in range(min(self.long_clips, len(self.specs))):
            spec, source = self.specs[index], self.clip(index, None, self.long_frames)
            folder = self.source_folder(index, source)
            source_seam = seam_figures(source.frames, seams)["ratio"]
            for kind in KINDS:
                out = self.scratch / f"{row.name}-{index}-{kind}"
                job = EditJob(
                    source=folder,
                    prompt=spec.target_caption(kind),
                    source_prompt=spec.caption,
                    frames=self.long_frames,
                    options=options,
                    out_frames_dir=out,
                    model=self.model,
                )
                began = time.perf_counter()
                result = run_job(job, self.pipeline)
                seconds = time.perf_counter() - began
                edited = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in result.frame_paths])
                shutil.rmtree(out, ignore_errors=True)
                figures = measure(edited, source, self.clip(index, kind, self.long_frames), kind)
                seam = _ratio(seam_figures(edited, seams)["ratio"], source_seam)
                edits.append({"clip": index, "kind": kind, **figures, "seam": seam, "edit_s": seconds})
        return edits

    @property
    def scratch(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="v2vz-bench-quality-"))
        return self.workdir

    def source_folder(self, index: int, source: WorldClip) -> Path:
        """The long clip as a PNG folder (lossless), written once: run_job's source."""
        folder = self.scratch / f"clip-{index}"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            for number, frame in enumerate(source.frames):
                Image.fromarray(frame).save(folder / f"frame_{number:04d}.png")
        return folder


# ---------------------------------------------------------------------------------------------------------------
# The estimate


@dataclass(frozen=True)
class Costs:
    """Seconds per frame and step of a direct inversion, a null-text one and an edit; per frame of a decode."""

    invert: float
    null_text: float
    edit: float
    decode: float

    def short_edit(self, frames: int, steps: int) -> float:
        return frames * (steps * self.edit + self.decode)

    def inversion(self, method: str, frames: int, steps: int) -> float:
        return frames * steps * (self.null_text if method == "null-text" else self.invert)


def calibrate(pipeline: Any, spec: ClipSpec, frames: int = CALIBRATION_FRAMES, steps: int = CALIBRATION_STEPS) -> Costs:
    """Time a short edit (after a first, untimed one that pays the first-call costs) and a null-text inversion."""
    clip = spec.source(frames)
    options = EditOptions(steps=steps, size=WORLD_SIZE)
    target = spec.target_caption("colour")
    latents = pipeline.encode_frames(clip.frames, options)
    for _ in range(2):
        began = time.perf_counter()
        inversion, _ = pipeline.invert(latents, spec.caption, options)
        invert = time.perf_counter() - began
        began = time.perf_counter()
        sampled = pipeline.sample(inversion, spec.caption, target, options)
        edit = time.perf_counter() - began
        began = time.perf_counter()
        pipeline.decode_latents(sampled.latents)
        decode = time.perf_counter() - began
    began = time.perf_counter()
    pipeline.invert(latents, spec.caption, options.replace(inversion="null-text"))
    null_text = time.perf_counter() - began
    scale = frames * steps
    return Costs(invert / scale, null_text / scale, edit / scale, decode / frames)


def estimate(rows: list[Row], bench: Bench, costs: Costs) -> float:
    """Seconds the rows will take: each distinct inversion and edit once, long jobs by their windows' frames."""
    steps, frames, clips = bench.steps, bench.frames, len(bench.specs)
    inversions: set[str] = set()
    edits: set[tuple] = set()
    seconds = 0.0
    for row in rows:
        if row.ideal:
            continue
        if row.long:
            seconds += min(bench.long_clips, clips) * len(KINDS) * long_job_seconds(row, bench, costs)
            continue
        options = row.options(bench.base, bench.specs[0], "colour")
        inversions.add(options.inversion)
        for kind in KINDS:
            kind_options = row.options(bench.base, bench.specs[0], kind)
            target = "source" if row.reconstruct else kind
            edits.add((target, kind_options, row.local, kind if row.local == "matte" else ""))
    seconds += clips * sum(costs.inversion(method, frames, steps) for method in inversions)
    return seconds + clips * len(edits) * costs.short_edit(frames, steps)


def long_job_seconds(row: Row, bench: Bench, costs: Costs) -> float:
    """One run_job: each window inverted and edited with its anchors (2 of the last window and the first frame, or
    the anchor pass's 3), the anchor pass for anchored; the attention's growth with the frames is left out."""
    options = bench.long_options(row)
    steps, extra = bench.steps, options.anchors + 1
    windows = plan_windows(bench.long_frames, options.window)
    frames = sum(len(w) for w in windows)
    edited = frames + extra * (len(windows) - 1 if row.long == "chained" else 0)
    if row.long == "anchored":
        edited += extra * len(windows) + extra  # every window attends to the anchors; the anchor pass edits them
        frames += extra
    return costs.inversion(options.inversion, frames, steps) + edited * steps * costs.edit + frames * costs.decode


# ---------------------------------------------------------------------------------------------------------------
# Output

COLUMNS = (
    "row",
    "colour",
    "backgr.",
    "shape",
    "reached",
    "caption",
    "centroid px",
    "IoU",
    "bg PSNR dB",
    "temporal",
    "seam",
    "invert s",
    "edit s",
)


def cells(row: Row, summary: dict[str, Any]) -> list[str]:
    reached = summary["reached"]
    return [
        row.name,
        *(_fmt(reached[kind], 2) for kind in KINDS),
        _fmt(summary["reached_overall"], 2),
        _fmt(summary["caption"], 2),
        _fmt(summary["centroid_px"], 1),
        _fmt(summary["iou"], 2),
        _fmt(summary["bg_psnr_db"], 1),
        _fmt(summary["temporal"], 2),
        _fmt(summary["seam"], 2),
        _fmt(summary["invert_s"], 2) if not row.long else "-",
        _fmt(summary["edit_s"], 2),
    ]


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


WIDTHS = (18, 6, 7, 6, 7, 7, 11, 5, 10, 8, 5, 8, 7)


def plain_line(values: list[str]) -> str:
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, WIDTHS, strict=True)))


def markdown_table(lines: list[list[str]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join(["---", *["---:"] * (len(COLUMNS) - 1)]) + "|"
    return "\n".join([head, rule, *("| " + " | ".join(cells) + " |" for cells in lines)])


def say(text: str = "") -> None:
    print(text, flush=True)


def environment_line(device: torch.device) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"environment: torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), {device}, CPU "
        f"{cpu_model()} ({os.cpu_count()} logical cores), load average {load}"
    )


def run_rows(bench: Bench, rows: list[Row], on_row: Callable[[Row, dict], None] | None = None) -> list[dict]:
    """Every row's edits and summary (in the rows' order); on_row hears each row as it finishes."""
    results = []
    for row in rows:
        edits = bench.run_row(row)
        summary = summarize(edits)
        result = {"row": row.name, "group": row.group, "changes": row.changes, "local": row.local, "long": row.long}
        result |= {"summary": summary, "edits": edits}
        results.append(result)
        if on_row:
            on_row(row, summary)
    return results


# ---------------------------------------------------------------------------------------------------------------


def base_options(text: str) -> dict[str, Any]:
    """`joint_groupnorm=false,guidance=5` -> the EditOptions fields, typed as a job's options are (wire.py)."""
    from v2vz.api.wire import parse_option

    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {name.strip(): parse_option(name.strip(), value.strip()) for name, value in pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toyworld", help="a built-in model or a diffusers folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--clips", type=int, default=CLIPS, help=f"the first N clips of the set (default {CLIPS})")
    parser.add_argument("--rows", default="all", help=f"comma list of rows or groups ({', '.join(GROUPS)}) or all")
    parser.add_argument("--long-clips", type=int, default=LONG_CLIPS)
    parser.add_argument("--long-frames", type=int, default=LONG_FRAMES)
    parser.add_argument("--long-window", type=int, default=LONG_WINDOW)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the count v2vz chooses)")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("V2VZ_CACHE", "~/.cache/v2vz")))
    parser.add_argument("--json", type=Path, default=None, help="write every row's figures and edits here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown at the end")
    parser.add_argument(
        "--base",
        default="",
        metavar="FIELD=VALUE,...",
        help="options every row starts from instead of the defaults, e.g. joint_groupnorm=false (the table of "
        "another default); values are read as the sidecar reads them",
    )
    args = parser.parse_args(argv)
    try:
        rows = select_rows(args.rows)
    except ValueError as exc:
        parser.error(str(exc))
    if args.clips < 1 or args.steps < 1:
        parser.error("--clips and --steps must be at least 1")
    apply_cpu_threads(args.threads or None)  # run_job applies the process's count to every span: the same here

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else None
    device = device or torch.device(args.device)
    say(environment_line(device))
    began = time.perf_counter()
    pipeline = VideoEditPipeline(load_model(args.model, str(device), args.cache_dir.expanduser()))
    specs = clip_specs(args.clips)
    bench = Bench(pipeline, args.model, args.steps, specs, FRAMES, args.long_frames, args.long_window, args.long_clips)
    bench.base_changes = base_options(args.base)
    costs = calibrate(pipeline, specs[0])
    say(
        f"model {args.model} loaded and timed in {time.perf_counter() - began:.1f} s; {len(specs)} clips x "
        f"{len(KINDS)} edits of {FRAMES} frames, {args.steps} steps; {len(rows)} rows: "
        f"{', '.join(r.name for r in rows)}"
    )
    say(
        f"estimate: {estimate(rows, bench, costs) / 60:.1f} min (per frame and step: inversion "
        f"{costs.invert * 1e3:.1f} ms, null-text {costs.null_text * 1e3:.1f} ms, edit {costs.edit * 1e3:.1f} ms)"
    )
    say(plain_line(list(COLUMNS)))
    lines: list[list[str]] = []

    def on_row(row: Row, summary: dict) -> None:
        lines.append(cells(row, summary))
        say(plain_line(lines[-1]))

    started = time.perf_counter()
    try:
        results = run_rows(bench, rows, on_row)
    finally:
        if bench.workdir is not None:
            shutil.rmtree(bench.workdir, ignore_errors=True)
    say(f"done in {(time.perf_counter() - started) / 60:.1f} min")
    if args.markdown:
        say()
        say(markdown_table(lines))
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        data = {
            "environment": environment_line(device),
            "settings": settings,
            "clips": [asdict(spec) for spec in specs],
            "rows": results,
        }
        args.json.write_text(json.dumps(data, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
