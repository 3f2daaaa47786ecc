"""Runs one EditJob end to end: decode the range, edit at the working size, write at the source size and fps.

The CLI's --local path and the daemon's worker both call `run_job`, so they behave the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from v2vz.job import EditJob
from v2vz_daemon.engine import video
from v2vz_daemon.engine.inversion import Inversion
from v2vz_daemon.engine.pipeline import CancelFn, ProgressFn, VideoEditPipeline

FrameCallback = Callable[[int, Path], None]  # (index within the job, final path) as each frame is written


class InversionStore(Protocol):
    """What run_job needs of a cache: the daemon's InversionCache fits."""

    def get(self, key: str) -> Inversion | None: ...

    def put(self, key: str, inversion: Inversion) -> object: ...


@dataclass
class JobResult:
    mp4: Path | None
    frame_paths: list[Path]
    source: video.VideoInfo
    working_size: tuple[int, int]
    inversion: Inversion
    timings: dict[str, float] = field(default_factory=dict)
    inversion_cached: bool = False


def run_job(
    job: EditJob,
    pipeline: VideoEditPipeline,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    inversion: Inversion | None = None,
    cache: InversionStore | None = None,
    on_frame: FrameCallback | None = None,
) -> JobResult:
    """Edit job.frames frames of job.source from job.start; raises V2vzError subclasses for bad input.

    With a cache, the inversion is looked up by the decoded frames' content (so a changed file never gets a stale
    entry) and stored after a miss: a re-prompt of the same clip skips inversion and null-text.
    """
    job.validate()
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    frames, info = video.read_frames(job.source, job.start, job.frames)
    long_side = job.options.size or pipeline.model.native_size
    width, height = video.working_size(info.width, info.height, long_side)
    small = video.resize_frames(frames, width, height)
    timings["read"] = time.perf_counter() - mark
    if progress:
        progress("read", 1, 1)

    key = None
    if inversion is None and cache is not None:
        from v2vz_daemon.inversion_cache import cache_key, frames_digest

        model_name = pipeline.model.name
        options = job.options.inversion_key()
        key = cache_key(
            frames_digest(small), job.start, job.frames, width, height, model_name, job.source_prompt, options
        )
        inversion = cache.get(key)
        if inversion is not None and progress:
            progress("cached-inversion", 1, 1)
    cached = inversion is not None
    result = pipeline.edit(small, job.source_prompt, job.prompt, job.options, progress, cancel, inversion=inversion)
    timings.update(result.timings)
    if key is not None and not cached:
        cache.put(key, result.inversion)

    mark = time.perf_counter()
    full = video.resize_frames(result.frames, info.width, info.height)
    frame_paths: list[Path] = []
    if job.out_frames_dir:
        for index in range(len(full)):
            (path,) = video.write_png_frames(full[index : index + 1], job.out_frames_dir, first_index=index)
            frame_paths.append(path)
            if on_frame:
                on_frame(index, path)
    mp4 = video.write_mp4(full, job.out_mp4, info.fps) if job.out_mp4 else None
    timings["write"] = time.perf_counter() - mark
    if progress:
        progress("write", 1, 1)
    return JobResult(mp4, frame_paths, info, (width, height), result.inversion, timings, cached)
