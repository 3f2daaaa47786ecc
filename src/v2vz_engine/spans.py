"""A span: the unit of work any worker can do alone, so a scheduler can place it anywhere.

A span is a window of a job (consecutive frames) or the anchor pass of an anchored job (frames spread over the
range), edited together at the working size with the anchor trajectories it links to. `edit_span` is all a worker
runs, in this process (run.py) or in a cluster's worker (v2vz_daemon.cluster); whoever ran the job's plan keeps the
order, writes the frames and announces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from v2vz.api.events import ProgressFn, Stage
from v2vz.api.job import EditJob
from v2vz_engine.cpu import apply_cpu_threads
from v2vz_engine.inversion import InversionStore, cache_key, frames_digest
from v2vz_engine.loras import apply_loras
from v2vz_engine.pipeline import AnchorLink, CancelFn, Region, VideoEditPipeline

ANCHOR_PASS = -1  # the `window` number of an anchored job's anchor pass


@dataclass(frozen=True)
class SpanTask:
    """What a worker needs to edit one span: the job (options as edited), its frames and what to record.

    indices: frame numbers within the job, in clip order. trajectory_positions: positions within the span whose latent
    trajectories later spans attend to. The anchors' trajectories travel beside the task (they are shared by every
    window of an anchored job, so a cluster sends them once).
    """

    job: EditJob
    window: int  # 0-based window number, or ANCHOR_PASS
    indices: tuple[int, ...]
    frames: np.ndarray  # uint8 (F, h, w, 3) at the working size
    trajectory_positions: tuple[int, ...] = ()
    matte: np.ndarray | None = None  # float32 (F, h, w) in 0..1 at the working size: a local edit's matte

    @property
    def label(self) -> str:
        if self.window == ANCHOR_PASS:
            return f"anchor pass (frames {', '.join(map(str, self.indices))})"
        return f"frames {self.indices[0]}..{self.indices[-1]}"


@dataclass(frozen=True)
class Anchors:
    """Frames of earlier spans that a span attends to: one object per job for anchored windows (a cluster sends it
    once), a new one per window for chained ones."""

    trajectories: torch.Tensor  # (steps, 2, A, 4, h, w): the latents entering every step, source and edit branch
    indices: tuple[int, ...]  # their frame numbers within the job
    shares: torch.Tensor | None = None  # (steps, A, h, w): their word shares in their own span (local_edit.py)


@dataclass
class SpanResult:
    frames: np.ndarray  # uint8 (F, h, w, 3) at the working size
    trajectories: torch.Tensor | None  # (steps, 2, R, 4, h, w) of task.trajectory_positions, on the CPU
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False  # the inversion came from the cache
    shares: torch.Tensor | None = None  # (steps, R, h, w) of the same positions: a word mask's, on the CPU
    region: np.ndarray | None = None  # float32 (F, h, w) at the latent size: the word region as edited

    def anchors(self, indices: tuple[int, ...]) -> Anchors | None:
        """What later spans attend to of this one: its recorded positions, which are the job's frames `indices`."""
        if self.trajectories is None:
            return None
        return Anchors(self.trajectories, indices, self.shares)


def edit_span(
    pipeline: VideoEditPipeline,
    task: SpanTask,
    anchors: Anchors | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    cache: InversionStore | None = None,
) -> SpanResult:
    """Edit one span attending to `anchors`; its inversion is cached by the span's frames (never by its matte or
    words: a local re-prompt uses the cache as well).

    The key hashes the decoded frames, so a changed file never gets a stale entry, and an anchor pass and a window
    can never share one unless their frames are the same. The job's LoRAs are applied to the model first (a worker
    of any job can run any span), and their digests and scales join the key: the inversion depends on the weights.
    """
    apply_cpu_threads()  # the same torch thread count for every span of every job: part of the pixels (cpu.py)
    job, frames = task.job, task.frames
    loras = apply_loras(pipeline, job.loras)  # the job's LoRA set on the resident model (none: the base)
    key = inversion = None
    if cache is not None:
        height, width = frames.shape[1:3]
        key = cache_key(
            frames_digest(frames),
            job.start + task.indices[0],
            len(task.indices),
            width,
            height,
            pipeline.model.name,
            job.source_prompt,
            job.options.inversion_key(),
            loras,
        )
        inversion = cache.get(key)
        if inversion is not None and progress:
            progress(Stage.INVERSION, 1, 1, cached=True)
    cached = inversion is not None
    result = pipeline.edit(
        frames,
        job.source_prompt,
        job.prompt,
        job.options,
        progress=progress,
        cancel=cancel,
        inversion=inversion,
        link=_link(anchors, task.trajectory_positions),
        region=Region(task.indices, task.matte),
    )
    if key is not None and not cached:
        cache.put(key, result.inversion)
    trajectories = result.trajectories.cpu() if result.trajectories is not None else None
    shares = result.shares.cpu() if result.shares is not None else None
    region = result.region.float().cpu().numpy() if result.region is not None else None
    return SpanResult(result.frames, trajectories, result.timings, cached, shares, region)


class Vid2VidZero:
    """vid2vid-zero's editor (methods.py): a VideoEditPipeline and `edit_span`, the call every method answers."""

    method = "vid2vid-zero"
    caches_inversion = True  # a span's inversion is kept for a re-prompt (inversion.py)

    def __init__(self, pipeline: VideoEditPipeline) -> None:
        self.pipeline = pipeline

    @property
    def model(self):
        return self.pipeline.model

    def edit_span(
        self,
        task: SpanTask,
        anchors: Anchors | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        cache: InversionStore | None = None,
    ) -> SpanResult:
        return edit_span(self.pipeline, task, anchors, progress=progress, cancel=cancel, cache=cache)


def _link(anchors: Anchors | None, positions: tuple[int, ...]) -> AnchorLink:
    if anchors is None:
        return AnchorLink(trajectory_positions=positions)
    return AnchorLink(anchors.trajectories, positions, anchors.indices, anchors.shares)
