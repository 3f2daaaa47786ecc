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
from v2vz_engine.pipeline import AnchorLink, CancelFn, VideoEditPipeline

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

    @property
    def label(self) -> str:
        if self.window == ANCHOR_PASS:
            return f"anchor pass (frames {', '.join(map(str, self.indices))})"
        return f"frames {self.indices[0]}..{self.indices[-1]}"


@dataclass
class SpanResult:
    frames: np.ndarray  # uint8 (F, h, w, 3) at the working size
    trajectories: torch.Tensor | None  # (steps, 2, R, 4, h, w) of task.trajectory_positions, on the CPU
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False  # the inversion came from the cache


def edit_span(
    pipeline: VideoEditPipeline,
    task: SpanTask,
    anchors: torch.Tensor | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    cache: InversionStore | None = None,
) -> SpanResult:
    """Edit one span attending to `anchors` (steps, 2, A, 4, h, w); its inversion is cached by the span's frames.

    The key hashes the decoded frames, so a changed file never gets a stale entry, and an anchor pass and a window
    can never share one unless their frames are the same.
    """
    apply_cpu_threads()  # the same torch thread count for every span of every job: part of the pixels (cpu.py)
    job, frames = task.job, task.frames
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
        link=AnchorLink(anchors, task.trajectory_positions),
    )
    if key is not None and not cached:
        cache.put(key, result.inversion)
    trajectories = result.trajectories.cpu() if result.trajectories is not None else None
    return SpanResult(result.frames, trajectories, result.timings, cached)
