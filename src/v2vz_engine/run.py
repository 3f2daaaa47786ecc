"""Runs one EditJob end to end, a window at a time: read, edit at the working size, write at the source size and fps.

The CLI's --local path and the daemon's worker both call `run_job`, so they behave the same. A clip of any length
is edited as consecutive windows (windows.py); each window's frames are written and announced as soon as it is
done, and nothing but one window's frames and the anchors' latent trajectories is held between windows.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from v2vz.api.errors import Cancelled, ResourceExhausted, V2vzError
from v2vz.api.events import ProgressFn, Stage
from v2vz.api.job import EditJob
from v2vz_engine import media
from v2vz_engine.inversion import InversionStore, cache_key, frames_digest
from v2vz_engine.pipeline import AnchorLink, CancelFn, EditResult, VideoEditPipeline
from v2vz_engine.windows import AnchorBank, auto_window, free_memory_bytes, plan_windows

log = logging.getLogger(__name__)

FrameCallback = Callable[[int, Path], None]  # (index within the job, final path) as each frame is written
OUT_OF_MEMORY = "the GPU ran out of memory: try fewer frames, a smaller --size or a smaller --window"


@dataclass
class JobResult:
    mp4: Path | None
    frame_paths: list[Path]
    source: media.MediaInfo
    working_size: tuple[int, int]
    windows: list[range]  # frame indices within the job, as edited
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over the windows
    cached_windows: int = 0  # windows whose inversion came from the cache

    @property
    def inversion_cached(self) -> bool:
        """Every window's inversion came from the cache (a pure re-prompt)."""
        return self.cached_windows == len(self.windows)


class _FrameBuffer:
    """Frames of the job read ahead only as far as the current window needs (a retried window reads nothing)."""

    def __init__(self, frames: Iterator[np.ndarray]) -> None:
        self._frames = frames
        self._first = 0  # job index of _held[0]
        self._held: list[np.ndarray] = []

    def take(self, span: range) -> np.ndarray:
        """The frames of `span` (job indices); earlier frames are dropped for good."""
        del self._held[: span.start - self._first]
        self._first = span.start
        while len(self._held) < len(span):
            self._held.append(next(self._frames))
        return np.stack(self._held[: len(span)])


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def as_resource_error(error: BaseException) -> ResourceExhausted | None:
    """The one-line error a user gets for a device that ran out of memory; None for any other failure."""
    if isinstance(error, V2vzError) or not _is_out_of_memory(error):
        return None
    return ResourceExhausted(OUT_OF_MEMORY)


@contextlib.contextmanager
def _writing(path: Path | None) -> Iterator[None]:
    """An OSError while writing an output (a disk that filled up meanwhile) becomes its one-line error."""
    try:
        yield
    except OSError as error:
        raise media.write_error(Path(path or "the output"), error) from error


def run_job(
    job: EditJob,
    pipeline: VideoEditPipeline,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    cache: InversionStore | None = None,
    on_frame: FrameCallback | None = None,
) -> JobResult:
    """Edit job.frames frames of job.source from job.start; raises V2vzError subclasses for bad input.

    With a cache, each window's inversion is looked up by the window's decoded frames (so a changed file never gets
    a stale entry) and stored after a miss: a re-prompt skips inversion and null-text, and a job cancelled or failed
    halfway keeps the inversions of the windows it finished. PNG frames already written stay on disk too.
    """
    job, info = media.resolve(job)
    long_side = job.options.size or pipeline.model.native_size
    width, height = media.working_size(info.width, info.height, long_side)
    automatic = job.options.window == 0
    if automatic:
        dtype_bytes = torch.finfo(pipeline.model.dtype).bits // 8
        window = auto_window(width, height, free_memory_bytes(pipeline.model.device), dtype_bytes)
    else:
        window = job.options.window
    pending = deque(plan_windows(job.frames, window))
    done: list[range] = []
    bank = AnchorBank(job.options.anchors)
    buffer = _FrameBuffer(media.iter_frames(job.source, job.start, job.frames, info))
    timings: dict[str, float] = {}
    frame_paths: list[Path] = []
    cached_windows = 0
    writer = media.Mp4Writer(job.out_mp4, info.fps) if job.out_mp4 else None
    try:
        while pending:
            span = pending.popleft()
            if cancel and cancel():
                raise Cancelled(f"cancelled before frames {span.start}..{span.stop - 1}")
            if progress:
                progress(Stage.WINDOW, len(done) + 1, len(done) + 1 + len(pending))
            mark = time.perf_counter()
            small = media.resize_frames(buffer.take(span), width, height)
            timings["read"] = timings.get("read", 0.0) + time.perf_counter() - mark
            try:
                result, cached = _edit_window(job, pipeline, small, span, bank, progress, cancel, cache)
            except Exception as error:
                if not (automatic and len(span) > 1 and _is_out_of_memory(error)):
                    raise
                smaller = max(1, len(span) // 2)
                log.warning("out of memory with a %d-frame window: retrying with %d frames", len(span), smaller)
                free_device_memory()
                rest = plan_windows(job.frames - span.start, smaller)
                pending = deque(range(span.start + r.start, span.start + r.stop) for r in rest)
                continue
            cached_windows += cached
            for stage, seconds in result.timings.items():
                timings[stage] = timings.get(stage, 0.0) + seconds
            mark = time.perf_counter()
            full = media.resize_frames(result.frames, info.width, info.height)
            if job.out_frames_dir:
                for offset, index in enumerate(span):
                    with _writing(job.out_frames_dir):
                        (path,) = media.write_png_frames(full[offset : offset + 1], job.out_frames_dir, index)
                    frame_paths.append(path)
                    if on_frame:
                        on_frame(index, path)
            if writer:
                with _writing(writer.path):
                    writer.write(full)
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - mark
            done.append(span)
        with _writing(job.out_mp4):
            mp4 = writer.close() if writer else None
    except BaseException:
        if writer:
            writer.abort()
        raise
    if progress:
        progress(Stage.WRITE, 1, 1)
    return JobResult(mp4, frame_paths, info, (width, height), done, timings, cached_windows)


def _edit_window(
    job: EditJob,
    pipeline: VideoEditPipeline,
    small: np.ndarray,
    span: range,
    bank: AnchorBank,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    cache: InversionStore | None,
) -> tuple[EditResult, bool]:
    """Edit one window with its anchors; records the trajectories later windows need. Returns (result, cached)."""
    key = inversion = None
    if cache is not None:
        height, width = small.shape[1:3]
        key = cache_key(
            frames_digest(small),
            job.start + span.start,
            len(span),
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
    _, anchors = bank.anchors_for(span)
    link = AnchorLink(anchors, tuple(bank.to_record(span)))
    result = pipeline.edit(
        small,
        job.source_prompt,
        job.prompt,
        job.options,
        progress=progress,
        cancel=cancel,
        inversion=inversion,
        link=link,
    )
    bank.store(span, list(link.record), result.trajectories)
    if key is not None and not cached:
        cache.put(key, result.inversion)
    return result, cached


def free_device_memory() -> None:
    """Drop what Python and the CUDA allocator still hold, after a job or before a smaller retry."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
