"""Runs one EditJob end to end, a window at a time: read, edit at the working size, write at the source size and fps.

The CLI's --local path and the daemon's worker both call `run_job`, so they behave the same. A clip of any length
is edited as windows (windows.py), chained or anchored; each window's frames are written and announced in clip
order as soon as they are done, and nothing but the windows in flight and the anchors' latent trajectories is held.
`run_spans` is the same plan with the spans (spans.py) edited elsewhere: a cluster's workers (v2vz_daemon.cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from v2vz import __version__
from v2vz.api.errors import Cancelled, ResourceExhausted, V2vzError
from v2vz.api.events import ProgressFn, Stage
from v2vz.api.job import EditJob, EditOptions
from v2vz.api.takes import (
    remove_replaced,
    remove_replaced_preview,
    replaced_preview,
    sidecar_path,
    take_record,
    write_sidecar,
)
from v2vz_engine import media
from v2vz_engine.cpu import apply_cpu_threads
from v2vz_engine.inversion import InversionStore
from v2vz_engine.media import writers
from v2vz_engine.pipeline import CancelFn, VideoEditPipeline
from v2vz_engine.spans import ANCHOR_PASS, SpanResult, SpanTask, edit_span
from v2vz_engine.windows import AnchorBank, auto_window, free_memory_bytes, plan_links, plan_windows

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
    """Frames of the job read ahead only as far as the current window needs."""

    def __init__(self, frames: Iterator[np.ndarray], first: int = 0) -> None:
        self._frames = frames
        self._first = first  # job index of _held[0]
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


@dataclass(frozen=True)
class WorkerFacts:
    """What planning a job needs of the device that edits it: the model's native size, its dtype, free memory."""

    native_size: int
    dtype_bytes: int
    free_bytes: int | None
    cpu_threads: int | None = None  # the torch threads a CPU edits with (part of its pixels); None on a GPU

    @classmethod
    def of(cls, pipeline: VideoEditPipeline) -> WorkerFacts:
        model = pipeline.model
        dtype_bytes = torch.finfo(model.dtype).bits // 8
        threads = apply_cpu_threads() if model.device.type == "cpu" else None
        return cls(model.native_size, dtype_bytes, free_memory_bytes(model.device), threads)


class SpanRunner(Protocol):
    """Where a job's spans run: here, one at a time (LocalRunner), or on a cluster's workers (v2vz_daemon.cluster)."""

    capacity: int  # spans worth keeping in flight at once

    def facts(self, model: str) -> WorkerFacts: ...

    def submit(
        self,
        task: SpanTask,
        anchors: torch.Tensor | None,
        progress: ProgressFn | None,
        cancel: CancelFn | None,
    ) -> Future[SpanResult]: ...


class LocalRunner:
    """Spans edited in the calling thread, at once: submit returns a finished future."""

    capacity = 1

    def __init__(self, pipeline: VideoEditPipeline, cache: InversionStore | None = None) -> None:
        self.pipeline = pipeline
        self.cache = cache

    def facts(self, model: str) -> WorkerFacts:
        return WorkerFacts.of(self.pipeline)

    def submit(self, task, anchors, progress, cancel) -> Future[SpanResult]:
        future: Future[SpanResult] = Future()
        try:
            result = edit_span(self.pipeline, task, anchors, progress=progress, cancel=cancel, cache=self.cache)
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(error)
        else:
            future.set_result(result)
        return future


def run_job(
    job: EditJob,
    pipeline: VideoEditPipeline,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    cache: InversionStore | None = None,
    on_frame: FrameCallback | None = None,
) -> JobResult:
    """Edit job.frames frames of job.source from job.start in this process; raises V2vzError subclasses for bad input.

    With a cache, each window's inversion is looked up by the window's decoded frames (so a changed file never gets
    a stale entry) and stored after a miss: a re-prompt skips inversion and null-text, and a job cancelled or failed
    halfway keeps the inversions of the windows it finished. PNG frames already written stay on disk too.
    """
    return run_spans(job, LocalRunner(pipeline, cache), progress, cancel, on_frame)


def run_spans(
    job: EditJob,
    runner: SpanRunner,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_frame: FrameCallback | None = None,
) -> JobResult:
    """Plan the job's windows, have `runner` edit them, and write and announce the frames in order, each once.

    Anchored: the anchor pass first, then up to runner.capacity windows in flight at once. Chained: one window after
    another, each attending to the last one's recorded frames. Whatever order the windows finish in, frames are
    written in clip order; a window still running when a later one finishes is waited for.
    """
    began = time.perf_counter()
    job, info = media.resolve(job)
    options = preview_options(job.options) if job.preview else job.options
    facts = runner.facts(job.model)
    long_side = options.size or facts.native_size
    if job.preview:
        long_side = max(PREVIEW_MIN_SIDE, long_side // 2)
    width, height = media.working_size(info.width, info.height, long_side)
    recorded = job  # the sidecar keeps the options asked for: a preview's final is the same job without `preview`
    job = dataclasses.replace(job, options=options)
    automatic = job.options.window == 0
    window = auto_window(width, height, facts.free_bytes, facts.dtype_bytes) if automatic else job.options.window
    plan = plan_links(job.frames, window, job.options.window_links, job.options.anchors)
    timings: dict[str, float] = {}
    cached_windows = 0
    failed = threading.Event()

    def span_cancel() -> bool:
        return failed.is_set() or bool(cancel and cancel())

    anchors = None
    if plan.anchored:
        if cancel and cancel():
            raise Cancelled("cancelled before the anchor frames")
        if progress:
            progress(Stage.ANCHORS, 0, 1)
        mark = time.perf_counter()
        small = media.resize_frames(_read_frames(job, info, plan.anchor_frames), width, height)
        _add(timings, {"read": time.perf_counter() - mark})
        positions = tuple(range(len(plan.anchor_frames)))
        task = SpanTask(job, ANCHOR_PASS, plan.anchor_frames, small, record=positions)
        result = runner.submit(task, None, _tagged(progress, 0, runner), cancel).result()
        anchors = result.trajectories
        _add(timings, result.timings)
        if progress:
            progress(Stage.ANCHORS, 1, 1)
    pending = deque(plan.windows)
    total = len(pending)
    in_flight: deque[tuple[range, Future[SpanResult]]] = deque()
    done: list[range] = []
    bank = AnchorBank(job.options.anchors)
    buffer = _FrameBuffer(media.iter_frames(job.source, job.start, job.frames, info))
    frame_paths: list[Path] = []
    writer = _open_writer(recorded, info)
    try:
        while pending or in_flight:
            limit = runner.capacity if plan.anchored else 1
            while pending and len(in_flight) < limit:
                span = pending.popleft()
                if cancel and cancel():
                    raise Cancelled(f"cancelled before frames {span.start}..{span.stop - 1}")
                if progress:
                    progress(Stage.WINDOW, len(done) + len(in_flight) + 1, total)
                mark = time.perf_counter()
                small = media.resize_frames(buffer.take(span), width, height)
                _add(timings, {"read": time.perf_counter() - mark})
                number = len(done) + len(in_flight)
                if plan.anchored:
                    task = SpanTask(job, number, tuple(span), small)
                    span_anchors = anchors
                else:
                    _, span_anchors = bank.anchors_for(span)
                    task = SpanTask(job, number, tuple(span), small, record=tuple(bank.to_record(span)))
                span_progress = _tagged(progress, number + 1, runner)
                in_flight.append((span, runner.submit(task, span_anchors, span_progress, span_cancel)))
            span, future = in_flight.popleft()
            try:
                result = future.result()
            except Exception as error:
                failed.set()  # the later spans in flight stop at their next step
                if not (automatic and len(span) > 1 and _is_out_of_memory(error)):
                    _drain(in_flight)
                    raise
                smaller = max(1, len(span) // 2)
                log.warning("out of memory with a %d-frame window: retrying with %d frames", len(span), smaller)
                _drain(in_flight)
                failed.clear()
                free_device_memory()
                rest = plan_windows(job.frames - span.start, smaller)
                pending = deque(range(span.start + r.start, span.start + r.stop) for r in rest)
                total = len(done) + len(pending)
                frames_left = media.iter_frames(job.source, job.start + span.start, job.frames - span.start, info)
                buffer = _FrameBuffer(frames_left, first=span.start)
                continue
            if not plan.anchored:
                bank.store(span, list(bank.to_record(span)), result.trajectories)
            cached_windows += result.cached
            _add(timings, result.timings)
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
            _add(timings, {"write": time.perf_counter() - mark})
            done.append(span)
        with _writing(job.output):
            files = writer.close() if writer else []
    except BaseException:
        failed.set()  # the spans still in flight stop at their next step
        _drain(in_flight)
        if writer:
            writer.abort()
        raise
    seconds = time.perf_counter() - began
    sidecar = _write_sidecar(recorded, info, (width, height), files, frame_paths, seconds, done, facts.cpu_threads)
    if progress:
        progress(Stage.WRITE, 1, 1)
    output = Path(job.output) if job.output is not None else None
    return JobResult(output, frame_paths, info, (width, height), done, timings, cached_windows, sidecar, files)


def _tagged(progress: ProgressFn | None, window: int, runner: SpanRunner) -> ProgressFn | None:
    """A span's progress, tagged with its window when windows run at once (their events interleave)."""
    if progress is None or runner.capacity < 2:
        return progress

    def tagged(stage: Stage, step: int, total: int, cached: bool = False, window_of: int | None = None) -> None:
        progress(stage, step, total, cached, window_of=window)

    return tagged


def _add(timings: dict[str, float], more: dict[str, float]) -> None:
    for stage, seconds in more.items():
        timings[stage] = timings.get(stage, 0.0) + seconds


def _drain(in_flight: deque[tuple[range, Future[SpanResult]]]) -> None:
    """Wait for the spans still running (their results are dropped): nothing runs on after the job ends."""
    while in_flight:
        _, future = in_flight.popleft()
        with contextlib.suppress(BaseException):
            future.result()


def _read_frames(job: EditJob, info: media.MediaInfo, indices: tuple[int, ...]) -> np.ndarray:
    """The frames at `indices` (within the job) without decoding the whole range: one seek per frame."""
    frames = [next(iter(media.iter_frames(job.source, job.start + index, 1, info))) for index in indices]
    return np.stack(frames)


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
    windows: list[range],
    cpu_threads: int | None,
) -> Path:
    """The take's JSON beside its output: the whole job (to re-make it exactly) and what was written. `windows`
    (the frames of each window as edited: an automatic window follows the memory free then) and `cpu_threads` are
    what a re-make elsewhere must match (docs/media.md, "Re-making a take exactly")."""
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
        windows=[[window.start, window.stop] for window in windows],
        cpu_threads=cpu_threads,
        seconds=round(seconds, 3),
        written_unix=round(time.time(), 3),
        version=__version__,
    )
    with _writing(path):
        if job.overwrite:
            remove_replaced(path, [*files, *frame_paths])  # the earlier take's frames beyond this one's go
        preview = replaced_preview(path, job)
        written = write_sidecar(path, record)
    if preview is not None:  # a final: its preview goes here, where the job ends, not in a client that may be gone
        remove_replaced_preview(preview, job)
    return written


def free_device_memory() -> None:
    """Drop what Python and the CUDA allocator still hold, after a job or before a smaller retry."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
