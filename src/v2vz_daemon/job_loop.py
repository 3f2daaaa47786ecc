"""The job loop: claims the oldest queued job, runs it through the engine, and records how it ended.

One job loop in the daemon's process by default, so jobs run one at a time in submission order; with a cluster
(v2vz_daemon.cluster) one job loop thread per model worker, each job's spans edited by the cluster's actors. Every
failure becomes the job's one-line reason and the loop goes on with the next job; a cancel is honoured between
two diffusion steps. Nothing kills the loop: when the journal cannot record (a full disk), the outcome of the job
in hand is kept and recorded as soon as the disk has room again, and no other job starts meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from v2vz.api.errors import Cancelled, JournalFull, status_of
from v2vz.api.events import EventType, JobOutcome, JobState, ProgressUpdate, Stage
from v2vz.api.text import printable
from v2vz_daemon.cancels import CancelRegistry
from v2vz_daemon.event_hub import EventHub
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_daemon.journal import JobRecord, Journal
from v2vz_daemon.model_slot import ModelSlot

if TYPE_CHECKING:
    from v2vz.api.job import EditJob
    from v2vz_daemon.cluster.service import Cluster
    from v2vz_engine.run import JobResult
    from v2vz_engine.spans import SpanTask

log = logging.getLogger("v2vz.daemon")


class JobLoop:
    """Runs the journal's queued jobs on the model slot's pipeline, or on the cluster, until `stopping` is set.

    `cancels` is the daemon's one registry, shared by every job loop: a cancel reaches the job whichever thread
    runs it.
    """

    def __init__(
        self,
        journal: Journal,
        hub: EventHub,
        slot: ModelSlot,
        cache: InversionCache,
        stopping: threading.Event,
        cancels: CancelRegistry,
        cluster: Cluster | None = None,
    ) -> None:
        self.journal = journal
        self.hub = hub
        self.slot = slot
        self.cache = cache
        self.stopping = stopping
        self.cancels = cancels
        self.cluster = cluster
        self.ready = cluster.ready if cluster is not None else slot.ready
        self._unrecorded: tuple[str, JobOutcome] | None = None  # an outcome the journal could not take yet
        self._events: JobEvents | None = None  # the running job's, while one runs

    @property
    def running(self) -> tuple[str, str] | None:
        """(job id, what it does now) while a job runs: for GetInfo."""
        events = self._events
        return None if events is None else (events.job_id, events.doing)

    def run(self) -> None:
        """The job loop's thread: it survives any exception, and a journal that cannot be written."""
        while not self.stopping.is_set():
            try:
                self._next()
            except JournalFull as exc:
                log.warning("%s", exc)
                self.stopping.wait(1.0)
            except Exception:  # noqa: BLE001 - a bug here must not stop every later job
                log.exception("the job loop hit an unexpected error; it goes on")
                self.stopping.wait(1.0)

    def _next(self) -> None:
        """Record a pending outcome, or run the next queued job; while the journal cannot be written, only try it."""
        if not self.journal.writable and self._unrecorded is None:
            self.journal.check_writable()
        if self._unrecorded is not None:
            job_id, ended = self._unrecorded
            self.journal.finish(job_id, ended.state, reason=ended.reason, result=ended.result())
            self._unrecorded = None
            log.info("recorded job %s as %s now that the journal can be written again", job_id, ended.state)
            self.hub.notify()
            return
        if not self.ready.wait(timeout=0.2):
            return
        record = self.journal.claim_next()
        if record is None:
            self.hub.wait_for_change(self.hub.version, timeout=0.5)
            return
        self.run_job(record)

    def run_job(self, record: JobRecord) -> None:
        from v2vz_engine.run import LocalRunner, as_resource_error, free_device_memory, run_spans

        job_id, job = record.job_id, record.job
        if self.journal.cancel_requested(job_id):
            self.finish(job_id, JobOutcome(JobState.CANCELLED, reason="cancelled before it started"))
            return
        attempt = f" (attempt {record.attempts}, after a restart)" if record.attempts > 1 else ""
        log.info(
            "job %s started%s: frames %d..%d of %s", job_id, attempt, job.start, job.start + job.frames - 1, job.source
        )
        began = time.monotonic()
        events = self._events = JobEvents(self, record)
        try:
            events.started()
            if self.cluster is not None:
                runner = self.cluster.runner(job_id, events.on_retry)
            else:
                runner = LocalRunner(self.slot.pipeline_for(job.model, events.progress), self.cache)
            result = run_spans(job, runner, events.progress, events.cancelled, on_frame=events.on_frame)
        except Cancelled as exc:
            if self.stopping.is_set() and not self.cancels.requested(job_id):
                log.info("job %s interrupted by shutdown; it runs again at the next start", job_id)
                return  # left 'running': recover() re-queues it
            self.finish(job_id, JobOutcome(JobState.CANCELLED, reason=str(exc)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's one-line reason, the loop lives on
            self.finish(job_id, failure(job_id, as_resource_error(exc) or exc))
        else:
            self.finish(job_id, done(job, result, seconds=round(time.monotonic() - began, 3)))
        finally:
            self._events = None
            self.cancels.clear(job_id)
            if self.cluster is None:  # the model is in this process (a cluster's workers hold their own)
                free_device_memory()

    def finish(self, job_id: str, ended: JobOutcome) -> None:
        """Record the outcome (the terminal event with it); kept for later when the journal cannot be written."""
        try:
            self.journal.finish(job_id, ended.state, reason=ended.reason, result=ended.result())
        except JournalFull as exc:
            log.warning("job %s ended %s but cannot be recorded yet: %s", job_id, ended.state, exc)
            self._unrecorded = (job_id, ended)
            return
        log_outcome(job_id, ended)
        self.hub.notify()


class JobEvents:
    """The engine's callbacks for one running job -> the event hub (and the daemon log, and what GetInfo shows).

    It keeps which window the engine is on, so that every progress event says so, and skips the frames an earlier
    attempt of the job announced already.
    """

    def __init__(self, loop: JobLoop, record: JobRecord) -> None:
        self.job_id = record.job_id
        self.hub = loop.hub
        self._loop = loop
        self.window, self.windows = 0, 0  # which window the engine is on: sent with every progress event
        self.doing = Stage.START.value  # what the job does now, in a few words
        self._announced = announced_frames(loop.journal, record.job_id) if record.attempts > 1 else set()

    def started(self) -> None:
        """The job left the queue."""
        self.hub.progress(self.job_id, ProgressUpdate(Stage.START, 0, 1))

    def progress(
        self,
        stage: str,
        step: int,
        total: int,
        cached: bool = False,
        window_of: int | None = None,
        reason: str = "",
    ) -> None:
        """The engine's ProgressFn; `window_of`: the window of an event when several windows run at once."""
        if stage == Stage.WINDOW:
            self.window, self.windows = step, total
        window = self.window if window_of is None else window_of
        if cached:
            log.info("job %s: window %d/%d inverted from the cache", self.job_id, window, self.windows)
        update = ProgressUpdate(stage, step, total, cached, window, self.windows, reason[:400])
        if reason:
            log.info("job %s: %s", self.job_id, printable(reason))
        self.doing = describe_step(update)
        self.hub.progress(self.job_id, update)

    def on_retry(self, task: SpanTask, retry: int, most: int, reason: str) -> None:
        """A cluster worker died mid-window: its window runs again elsewhere."""
        log.warning("job %s: %s runs again (retry %d of %d): %s", self.job_id, task.label, retry, most, reason)
        update = ProgressUpdate(Stage.RETRY, retry, most, False, max(task.window + 1, 0), self.windows, reason[:400])
        self.hub.progress(self.job_id, update)

    def cancelled(self) -> bool:
        """The engine's cancel check: a cancel was asked for, or the daemon stops."""
        return self._loop.cancels.requested(self.job_id) or self._loop.stopping.is_set()

    def on_frame(self, index: int, path: Path) -> None:
        """A frame was written: announced once per job (an earlier attempt wrote it to the same path)."""
        if index not in self._announced:
            self.hub.emit(self.job_id, EventType.FRAME, {"index": index, "path": str(path)})


def done(job: EditJob, result: JobResult, seconds: float) -> JobOutcome:
    """The outcome of a job the engine finished: its outputs, times and frames."""
    return JobOutcome(
        JobState.DONE,
        output=str(result.output) if result.output else "",
        frame_paths=tuple(str(p) for p in result.frame_paths),
        timings=result.timings,
        inversion_cached=result.inversion_cached,
        seconds=seconds,
        frames=sum(len(span) for span in result.windows),
        take=job.take or 0,
        preview=job.preview,
        sidecar=str(result.sidecar) if result.sidecar else "",
    )


def failure(job_id: str, exc: BaseException) -> JobOutcome:
    """A failed job's outcome: the error's one line and status; an unexpected error is logged with its traceback."""
    status = status_of(exc)
    if status != "INTERNAL":
        return JobOutcome(JobState.FAILED, reason=str(exc), code=status)
    log.exception("job %s failed", job_id)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return JobOutcome(JobState.FAILED, reason=f"internal error: {type(exc).__name__}: {first}", code=status)


def log_outcome(job_id: str, ended: JobOutcome) -> None:
    """The daemon log's line for a job that ended: done with its outputs and time, failed with the reason."""
    if ended.state == JobState.DONE:
        outputs = [ended.output] if ended.output else []
        if ended.frame_paths:
            outputs.append(f"{len(ended.frame_paths)} PNG frames in {Path(ended.frame_paths[0]).parent}")
        cached = " (inversion from the cache)" if ended.inversion_cached else ""
        log.info("job %s done in %.1f s: %s%s", job_id, ended.seconds, ", ".join(outputs) or "no outputs", cached)
    elif ended.state == JobState.FAILED:
        log.warning("job %s failed (%s): %s", job_id, ended.code, ended.reason)
    else:
        log.info("job %s %s: %s", job_id, ended.state, ended.reason)


def announced_frames(journal: Journal, job_id: str) -> set[int]:
    """The frame indices a job's earlier attempts announced before a restart interrupted them.

    A re-queued job runs again from its start and writes those frames again to the same paths; announcing them a
    second time would give a watcher (a host placing frames as they come) one frame twice in one job's events.
    """
    return {event.payload["index"] for event in journal.events_after(job_id, 0) if event.kind == EventType.FRAME}


def describe_step(update: ProgressUpdate) -> str:
    """What a job does now in a few words, e.g. `edit 12/50 (window 1/2)`, for `v2vz status`."""
    text = f"{update.stage} {update.step}/{update.total}" + (" (cached)" if update.cached else "")
    several = update.windows > 1 and update.stage != Stage.WINDOW
    return text + (f" (window {update.window}/{update.windows})" if several else "")
