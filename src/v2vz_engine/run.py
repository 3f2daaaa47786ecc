"""Runs one EditJob end to end, a window at a time: read, edit at the working size, write at the source size and fps.

The CLI's --local path and the daemon's worker both call `run_job`, so they behave the same. A clip of any length
is edited as consecutive windows (windows.py); each window's frames are written and announced as soon as it is
done, and nothing but one window's frames and the anchors' latent trajectories is held between windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from v2vz import __version__
from v2vz.api.errors import Cancelled, ResourceExhausted, V2vzError
from v2vz.api.events import ProgressFn, Stage
from v2vz.api.job import EditJob, EditOptions
from v2vz.api.takes import sidecar_path, take_record, write_sidecar
from v2vz_engine import media
from v2vz_engine.inversion import InversionStore, cache_key, frames_digest
from v2vz_engine.media import writers
from v2vz_engine.pipeline import AnchorLink, CancelFn, EditResult, VideoEditPipeline
from v2vz_engine.windows import AnchorBank, auto_window, free_memory_bytes, plan_windows

log = logging.getLogger(__name__)

FrameCallback = Callable[[int, Path], None]  # (index within the job, final path) as each frame is written
OUT_OF_MEMORY = "the GPU ran out of memory: try fewer frames, a smaller --size or a smaller --window"


PREVIEW_STEPS = 10  # the preview pass: about 10 steps ...
PREVIEW_MIN_SIDE = 32  # ... at half the working size, never below this long side


@dataclass
class JobResult:
    output: Path | None  # the file or frame pattern written (job.output)
    frame_paths: list[Path]  # the 8-bit PNG frames (job.out_frames_dir)
    source: media.MediaInfo
    working_size: tuple[int, int]
    windows: list[range]  # frame indices within the job, as edited
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over the windows
    cached_windows: int = 0  # windows whose inversion came from the cache
    sidecar: Path | None = None  # the take's JSON beside the output (v2vz.api.takes)
    files: list[Path] = field(default_factory=list)  # every file of `output` (frames of a sequence, WAVs)

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
    began = time.perf_counter()
    job, info = media.resolve(job)
    options = preview_options(job.options) if job.preview else job.options
    long_side = options.size or pipeline.model.native_size
    if job.preview:
        long_side = max(PREVIEW_MIN_SIDE, long_side // 2)
    width, height = media.working_size(info.width, info.height, long_side)
    recorded = job  # the sidecar keeps the options asked for: a preview's final is the same job without `preview`
    job = dataclasses.replace(job, options=options)
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
    writer = _open_writer(recorded, info)
    written: list[Path] = []
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
                    written += writer.write(full)
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - mark
            done.append(span)
        with _writing(job.output):
            files = writer.close() if writer else []
    except BaseException:
        if writer:
            writer.abort()
        raise
    sidecar = _write_sidecar(recorded, info, (width, height), files, frame_paths, time.perf_counter() - began)
    if progress:
        progress(Stage.WRITE, 1, 1)
    output = Path(job.output) if job.output is not None else None
    return JobResult(output, frame_paths, info, (width, height), done, timings, cached_windows, sidecar, files)


def preview_options(options: EditOptions) -> EditOptions:
    """The preview pass of a job's options: direct inversion (exact, no optimization), at most PREVIEW_STEPS steps;
    run_job also halves the working size. Every frame of the range is edited, so the preview shows the motion."""
    return options.replace(inversion="direct", steps=min(options.steps, PREVIEW_STEPS))


def _open_writer(job: EditJob, info: media.MediaInfo) -> writers.ClipWriter | None:
    """The writer of the job's output file or frame pattern, which carries the take's record in its metadata."""
    if job.output is None:
        return None
    record = json.dumps(take_record(job, "written"), sort_keys=True, separators=(",", ":"))
    return writers.open_writer(
        Path(job.output),
        job.output_format,
        info.fps,
        info,
        first_frame=job.start,
        frame_count=job.frames,
        audio=job.audio,
        metadata={"v2vz": record},
    )


def _write_sidecar(
    job: EditJob,
    info: media.MediaInfo,
    size: tuple[int, int],
    files: list[Path],
    frame_paths: list[Path],
    seconds: float,
) -> Path:
    """The take's JSON beside its output: the whole job (to re-make it exactly) and what was written."""
    path = sidecar_path(job.output, job.out_frames_dir)
    record = take_record(
        job,
        "done",
        output=str(job.output) if job.output is not None else None,
        files=[str(file) for file in files],
        frames_dir=str(job.out_frames_dir) if job.out_frames_dir is not None else None,
        frame_count=len(frame_paths) or job.frames,
        source_size=[info.width, info.height],
        fps=str(info.fps),
        working_size=list(size),
        seconds=round(seconds, 3),
        written_unix=round(time.time(), 3),
        version=__version__,
    )
    with _writing(path):
        return write_sidecar(path, record)


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
