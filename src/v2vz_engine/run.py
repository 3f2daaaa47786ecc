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
from v2vz.api.job import EditJob
from v2vz.api.takes import (
    remove_replaced,
    remove_replaced_preview,
    replaced_preview,
    sidecar_path,
    take_record,
    write_sidecar,
)
from v2vz_engine import media
from v2vz_engine.inversion import InversionStore
from v2vz_engine.local_edit import composite, downsample, empty_frames, upsample
from v2vz_engine.media import writers
from v2vz_engine.media.outputs import mask_paths
from v2vz_engine.methods import (  # noqa: F401 - PREVIEW_* and DeviceFacts: re-exported
    PREVIEW_MIN_SIDE,
    PREVIEW_STEPS,
    DeviceFacts,
    check_method,
    editor_of,
    method_of,
)
from v2vz_engine.pipeline import CancelFn, VideoEditPipeline
from v2vz_engine.spans import ANCHOR_PASS, Anchors, SpanResult, SpanTask
from v2vz_engine.windows import AnchorBank, WindowPlan, plan_windows

log = logging.getLogger(__name__)

FrameCallback = Callable[[int, Path], None]  # (index within the job, final path) as each frame is written
OUT_OF_MEMORY = "the GPU ran out of memory: try fewer frames, a smaller --size or a smaller --window"


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


class SpanRunner(Protocol):
    """Where a job's spans run: here, one at a time (LocalRunner), or on a cluster's workers (v2vz_daemon.cluster)."""

    capacity: int  # spans worth keeping in flight at once

    def facts(self, model: str) -> DeviceFacts: ...

    def submit(
        self,
        task: SpanTask,
        anchors: Anchors | None,
        progress: ProgressFn | None,
        cancel: CancelFn | None,
    ) -> Future[SpanResult]: ...


class LocalRunner:
    """Spans edited in the calling thread, at once, by an editor (methods.py): submit returns a finished future."""

    capacity = 1

    def __init__(self, pipeline: VideoEditPipeline, cache: InversionStore | None = None) -> None:
        self.pipeline = pipeline  # as given: a VideoEditPipeline, or an editor
        self.editor = editor_of(pipeline)  # the method's editor (methods.py): Vid2VidZero or FlowEditor
        self.cache = cache if self.editor.caches_inversion else None

    def facts(self, model: str) -> DeviceFacts:
        return DeviceFacts.of(self.editor)

    def submit(self, task, anchors, progress, cancel) -> Future[SpanResult]:
        future: Future[SpanResult] = Future()
        try:
            result = self.editor.edit_span(task, anchors, progress=progress, cancel=cancel, cache=self.cache)
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
    *,
    info: media.MediaInfo | None = None,
) -> JobResult:
    """Edit job.frames frames of job.source from job.start in this process; raises V2vzError subclasses for bad input.

    With a cache, each window's inversion is looked up by the window's decoded frames (so a changed file never gets
    a stale entry) and stored after a miss: a re-prompt skips inversion and null-text, and a job cancelled or failed
    halfway keeps the inversions of the windows it finished. PNG frames already written stay on disk too.

    `info`: what media.resolve(job) returned beside the job, for a caller that resolved it already (the CLI's
    --local, before the model loads): the job is then neither checked nor probed again (a probe of an MKV decodes it).
    """
    return run_spans(job, LocalRunner(pipeline, cache), progress, cancel, on_frame, info=info)


def run_spans(
    job: EditJob,
    runner: SpanRunner,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_frame: FrameCallback | None = None,
    *,
    info: media.MediaInfo | None = None,
) -> JobResult:
    """Plan the job's windows, have `runner` edit them, and write and announce the frames in order, each once.

    Anchored: the anchor pass first, then up to runner.capacity windows in flight at once. Chained: one window after
    another, each attending to the last one's recorded frames. Whatever order the windows finish in, frames are
    written in clip order; a window still running when a later one finishes is waited for. `info`: the job was
    resolved against its source already (media.resolve returned both), so it is neither checked nor probed again.
    """
    began = time.perf_counter()
    timings: dict[str, float] = {}
    # 1. The plan: the job resolved against its source, the options as edited, the working size, the windows.
    plan = plan_job(job, runner, info)
    # 2. The anchor pass (anchored windows only): the frames every window attends to, edited together first.
    anchors = _anchor_pass(plan, runner, progress, cancel, timings)
    windows = _WindowRun(plan, runner, anchors, progress, cancel, timings)
    # 3. The output sink: the writer of the output, the PNG frames each announced to on_frame.
    sink = _OutputSink(plan, on_frame, timings)
    try:
        # 4. The windows, as many at once as their links allow, written in clip order; out of memory re-plans.
        windows.run(sink)
        files = sink.close()
    except BaseException:
        windows.stop()
        sink.abort()
        raise
    # 5. The sidecar: the take's record of what was written, beside the output.
    plan = windows.plan  # as re-planned: the windows as edited
    files += sink.mask_paths
    sidecar = _write_sidecar(plan, files, sink.frame_paths, time.perf_counter() - began, windows.done)
    if progress:
        progress(Stage.WRITE, 1, 1)
    output = Path(plan.job.output) if plan.job.output is not None else None
    return JobResult(
        output,
        sink.frame_paths,
        plan.info,
        plan.working_size,
        windows.done,
        timings,
        windows.cached_windows,
        sidecar,
        files,
    )


@dataclass(frozen=True)
class JobPlan:
    """What a job edits and how, decided before a frame is read (step 1 of run_spans).

    `job` is resolved (frames=0 counted) with the options as edited (a preview's); `asked` is the same job with the
    options asked for, which the output's metadata and the sidecar keep (a preview's final is `asked` without
    `preview`). An out-of-memory window of an automatic size re-plans the windows from it on (`replan`).
    """

    job: EditJob
    asked: EditJob
    info: media.MediaInfo
    facts: DeviceFacts
    working_size: tuple[int, int]
    automatic: bool  # the window was chosen from the free memory, so it may shrink when the device runs out
    windows: WindowPlan
    matte: media.MediaInfo | None = None  # the job's matte, probed once

    def replan(self, failed: range, frames: int) -> JobPlan:
        """This plan after window `failed` ran out of memory: the windows before it kept, `frames`-frame ones on."""
        kept = tuple(window for window in self.windows.windows if window.start < failed.start)
        rest = plan_windows(self.job.frames - failed.start, frames)
        shifted = tuple(range(failed.start + r.start, failed.start + r.stop) for r in rest)
        return dataclasses.replace(self, windows=dataclasses.replace(self.windows, windows=kept + shifted))


def plan_job(job: EditJob, runner: SpanRunner, info: media.MediaInfo | None = None) -> JobPlan:
    """Resolve the job (unless `info` says it is resolved), then its method (methods.py) chooses the working size
    and the spans; a method that does not run on the job's model is refused here, before a frame is read."""
    if info is None:
        job, info = media.resolve(job)
    method = method_of(job.options)
    options = method.preview(job.options) if job.preview else job.options
    facts = runner.facts(job.model)
    check_method(options, facts.family, job.model or "the daemon's")
    edited = dataclasses.replace(job, options=options)
    working_size, windows, automatic = method.plan(edited, info, facts)
    log.debug("%d windows, %s: %d edits end to end", len(windows.windows), windows.links, windows.critical_path)
    matte = media.probe(Path(job.matte).expanduser()) if job.matte is not None else None
    return JobPlan(edited, job, info, facts, working_size, automatic, windows, matte)


def _anchor_pass(
    plan: JobPlan,
    runner: SpanRunner,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    timings: dict[str, float],
) -> Anchors | None:
    """The anchor frames' trajectories, edited together (step 2); None for chained windows, which have no pass."""
    links = plan.windows
    if not links.anchored:
        return None
    if cancel and cancel():
        raise Cancelled("cancelled before the anchor frames")
    if progress:
        progress(Stage.ANCHORS, 0, 1)
    mark = time.perf_counter()
    small = media.resize_frames(_read_frames(plan.job, plan.info, links.anchor_frames), *plan.working_size)
    matte = _working_matte(plan, _read_matte(plan, links.anchor_frames))
    _add(timings, {"read": time.perf_counter() - mark})
    positions = tuple(range(len(links.anchor_frames)))
    task = SpanTask(plan.job, ANCHOR_PASS, links.anchor_frames, small, trajectory_positions=positions, matte=matte)
    result = runner.submit(task, None, _tagged(progress, 0, runner), cancel).result()
    _add(timings, result.timings)
    if progress:
        progress(Stage.ANCHORS, 1, 1)
    return result.anchors(links.anchor_frames)


def _read_matte(plan: JobPlan, indices: tuple[int, ...] | range) -> np.ndarray | None:
    """The job's matte for its frames `indices` at the source's size (None: no matte)."""
    if plan.matte is None:
        return None
    return media.read_matte(plan.job, plan.matte, tuple(indices), plan.info.width, plan.info.height)


def _working_matte(plan: JobPlan, matte: np.ndarray | None) -> np.ndarray | None:
    """A matte at the source's size -> at the working size, where the span edits."""
    return None if matte is None else downsample(matte, *plan.working_size).numpy()


class _OutputSink:
    """Where edited windows go, in clip order (step 3): at the source size to the output file, whose writer it owns
    (closed when the job ends, aborted when it fails), and as PNG frames, each announced to `on_frame`."""

    def __init__(self, plan: JobPlan, on_frame: FrameCallback | None, timings: dict[str, float]) -> None:
        self._plan = plan
        self._on_frame = on_frame
        self._timings = timings
        self.frame_paths: list[Path] = []
        self.mask_paths: list[Path] = []
        self._writer = _open_writer(plan.asked, plan.info)

    def write(self, span: range, full: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Write the frames of `span` (job indices) at the source's size; a local edit's weight (F, H, W) goes to
        the mask folder, if the job has one, as 8-bit grey PNGs numbered like the source's frames."""
        mark = time.perf_counter()
        frames_dir = self._plan.job.out_frames_dir
        if weight is not None and self._plan.job.mask_dir is not None:
            paths = mask_paths(self._plan.job)[span.start : span.stop]
            with _writing(self._plan.job.mask_dir):
                self.mask_paths += media.write_masks(weight, paths)
        if frames_dir:
            for offset, index in enumerate(span):
                with _writing(frames_dir):
                    (path,) = media.write_png_frames(full[offset : offset + 1], frames_dir, index)
                self.frame_paths.append(path)
                if self._on_frame:
                    self._on_frame(index, path)
        if self._writer:
            with _writing(self._writer.path):
                self._writer.write(full)
        _add(self._timings, {"write": time.perf_counter() - mark})

    def close(self) -> list[Path]:
        """Finish the output: every file it wrote (frames of a sequence, WAVs)."""
        with _writing(self._plan.job.output):
            return self._writer.close() if self._writer else []

    def abort(self) -> None:
        """The job failed or was cancelled: the half-written output goes (the PNG frames stay)."""
        if self._writer:
            self._writer.abort()


class _WindowRun:
    """The job's windows on `runner` (step 4): each submitted once the windows it depends on are done
    (WindowPlan.depends_on) and the runner has room, handed to the sink in clip order, however they finish. A window
    of an automatic size that runs out of memory re-plans the rest at half its size (JobPlan.replan)."""

    def __init__(
        self,
        plan: JobPlan,
        runner: SpanRunner,
        anchors: torch.Tensor | None,
        progress: ProgressFn | None,
        cancel: CancelFn | None,
        timings: dict[str, float],
    ) -> None:
        self.plan = plan
        self.done: list[range] = []
        self.cached_windows = 0  # windows whose inversion came from the cache
        self._runner = runner
        self._anchors = anchors
        self._progress = progress
        self._cancel = cancel
        self._timings = timings
        self._bank = AnchorBank(plan.job.options.anchors)
        self._pending = deque(plan.windows.windows)
        self._in_flight: deque[tuple[range, Future[SpanResult]]] = deque()
        self._held: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # a local edit's source frames and matte
        self._buffer = self._frames_from(0)
        self._failed = threading.Event()  # set: the spans in flight stop at their next step

    def run(self, sink: _OutputSink) -> None:
        """Edit every window; the sink gets each one's frames in clip order as soon as those before it are in."""
        while self._pending or self._in_flight:
            self._submit_ready()
            span, future = self._in_flight.popleft()
            try:
                result = future.result()
            except Exception as error:
                self._failed.set()  # the later spans in flight stop at their next step
                if not (self.plan.automatic and len(span) > 1 and _is_out_of_memory(error)):
                    raise  # stop() waits for the spans in flight
                self._retry_smaller(span)
                continue
            if not self.plan.windows.anchored and result.trajectories is not None:  # FlowEdit's span records none
                self._bank.store(span, list(self._bank.to_record(span)), result.trajectories, result.shares)
            self.cached_windows += result.cached
            _add(self._timings, result.timings)
            info = self.plan.info
            full = media.resize_frames(result.frames, info.width, info.height)
            weight = None
            if span.start in self._held:
                source, matte = self._held.pop(span.start)
                weight = _weight(result.region, matte, info.width, info.height)
                full = composite(full, source, weight)
                self._say_empty(span, weight)
            sink.write(span, full, weight)
            self.done.append(span)

    def stop(self) -> None:
        """The job failed or was cancelled: the spans still in flight stop at their next step and are waited for."""
        self._failed.set()
        _drain(self._in_flight)

    def _submit_ready(self) -> None:
        """Hand the runner every pending window whose links are done, while it has room."""
        while self._pending and len(self._in_flight) < self._runner.capacity:
            number = len(self.done) + len(self._in_flight)
            if any(needed >= len(self.done) for needed in self.plan.windows.depends_on(number)):
                return  # a window it links to is still in flight (-1, the anchor pass, is always done)
            span = self._pending.popleft()
            if self._cancel and self._cancel():
                raise Cancelled(f"cancelled before frames {span.start}..{span.stop - 1}")
            if self._progress:
                self._progress(Stage.WINDOW, number + 1, len(self.plan.windows.windows))
            mark = time.perf_counter()
            source = self._buffer.take(span)
            small = media.resize_frames(source, *self.plan.working_size)
            matte = _read_matte(self.plan, span)
            if self.plan.job.local:
                self._held[span.start] = (source, matte)  # the composite needs the source's own pixels
            _add(self._timings, {"read": time.perf_counter() - mark})
            small_matte = _working_matte(self.plan, matte)
            if self.plan.windows.anchored:
                task = SpanTask(self.plan.job, number, tuple(span), small, matte=small_matte)
                anchors = self._anchors
            else:
                indices, trajectories = self._bank.anchors_for(span)
                anchors = None
                if trajectories is not None:
                    anchors = Anchors(trajectories, tuple(indices), self._bank.shares_for(indices))
                positions = tuple(self._bank.to_record(span))
                task = SpanTask(
                    self.plan.job, number, tuple(span), small, trajectory_positions=positions, matte=small_matte
                )
            span_progress = _tagged(self._progress, number + 1, self._runner)
            self._in_flight.append((span, self._runner.submit(task, anchors, span_progress, self._span_cancel)))

    def _say_empty(self, span: range, weight: np.ndarray) -> None:
        """The mask event of a local edit's window: how many of its frames have something to edit, and which not."""
        if not self._progress:
            return
        empty = [span.start + position for position in empty_frames(weight)]
        reason = ""
        if empty:
            where = "the matte" if self.plan.job.matte is not None else "the maps of the edit-only words"
            reason = (
                f"nothing to edit in frame(s) {_frame_list(empty)} ({where} leave(s) them out): they are left as shot"
            )
        self._progress(Stage.MASK, len(span) - len(empty), len(span), reason=reason)

    def _span_cancel(self) -> bool:
        return self._failed.is_set() or bool(self._cancel and self._cancel())

    def _retry_smaller(self, span: range) -> None:
        """Re-plan from `span` on with windows of half its frames, once the spans in flight have stopped."""
        smaller = max(1, len(span) // 2)
        log.warning("out of memory with a %d-frame window: retrying with %d frames", len(span), smaller)
        _drain(self._in_flight)
        self._held.clear()
        self._failed.clear()
        free_device_memory()
        self.plan = self.plan.replan(span, smaller)
        self._pending = deque(self.plan.windows.windows[len(self.done) :])
        self._buffer = self._frames_from(span.start)

    def _frames_from(self, first: int) -> _FrameBuffer:
        """The job's frames from index `first` on, read ahead only as far as the current window needs."""
        job = self.plan.job
        frames = media.iter_frames(job.source, job.start + first, job.frames - first, self.plan.info)
        return _FrameBuffer(frames, first=first)


def _weight(region: np.ndarray | None, matte: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """A local edit's weight at the source's size: the matte times the word region (bilinear from the latent)."""
    weight = matte if matte is not None else np.ones((len(region), height, width), np.float32)
    if region is not None:
        weight = weight * upsample(region, width, height)
    return weight


def _frame_list(frames: list[int]) -> str:
    """[3, 4, 5, 9] -> "3..5, 9"."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def _tagged(progress: ProgressFn | None, window: int, runner: SpanRunner) -> ProgressFn | None:
    """A span's progress, tagged with its window when windows run at once (their events interleave)."""
    if progress is None or runner.capacity < 2:
        return progress

    def tagged(
        stage: Stage, step: int, total: int, cached: bool = False, window_of: int | None = None, reason: str = ""
    ) -> None:
        progress(stage, step, total, cached, window_of=window, reason=reason)

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
    plan: JobPlan, files: list[Path], frame_paths: list[Path], seconds: float, windows: list[range]
) -> Path:
    """The take's JSON beside its output: the whole job as asked (to re-make it exactly) and what was written.
    `windows` (the frames of each window as edited: an automatic window follows the memory free then) and the CPU
    threads are what a re-make elsewhere must match (docs/media.md, "Re-making a take exactly")."""
    job, info = plan.asked, plan.info
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
        working_size=list(plan.working_size),
        windows=[[window.start, window.stop] for window in windows],
        cpu_threads=plan.facts.cpu_threads,
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
