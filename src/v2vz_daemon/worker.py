"""The worker: claims the oldest queued job, runs it through the engine, and records how it ended.

One worker in the daemon's process by default, so jobs run one at a time in submission order; with a cluster
(v2vz_daemon.cluster) one worker thread per model worker, each job's spans edited by the cluster's actors. Every
failure becomes the job's one-line reason and the worker goes on with the next job; a cancel is honoured between
two diffusion steps. Nothing kills the worker: when the journal cannot record (a full disk), the outcome of the job
in hand is kept and recorded as soon as the disk has room again, and no other job starts meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from v2vz.api.errors import Cancelled, JournalFull, status_of
from v2vz.api.events import EventType, JobState, Stage
from v2vz_daemon.event_hub import EventHub
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_daemon.journal import JobRecord, Journal
from v2vz_daemon.model_slot import ModelSlot

if TYPE_CHECKING:
    from v2vz_daemon.cluster.service import Cluster

log = logging.getLogger("v2vz.daemon")


class Worker:
    """Runs the journal's queued jobs on the model slot's pipeline, or on the cluster, until `stopping` is set.

    `cancel_flags` is shared by every worker thread of a daemon: a cancel reaches the job whichever thread runs it.
    """

    def __init__(
        self,
        journal: Journal,
        hub: EventHub,
        slot: ModelSlot,
        cache: InversionCache,
        stopping: threading.Event,
        cancel_flags: set[str] | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.journal = journal
        self.hub = hub
        self.slot = slot
        self.cache = cache
        self.stopping = stopping
        self.cluster = cluster
        self.ready = cluster.ready if cluster is not None else slot.ready
        self._cancel: set[str] = cancel_flags if cancel_flags is not None else set()
        self._unrecorded: tuple[str, str, dict] | None = None  # an outcome the journal could not take yet
        self.running: tuple[str, str] | None = None  # (job id, what it does now) while a job runs: for GetInfo

    def run(self) -> None:
        """The worker thread's loop: it survives any exception, and a journal that cannot be written."""
        while not self.stopping.is_set():
            try:
                self._next()
            except JournalFull as exc:
                log.warning("%s", exc)
                self.stopping.wait(1.0)
            except Exception:  # noqa: BLE001 - a bug here must not stop every later job
                log.exception("the worker hit an unexpected error; it goes on")
                self.stopping.wait(1.0)

    def _next(self) -> None:
        """Record a pending outcome, or run the next queued job; while the journal cannot be written, only try it."""
        if not self.journal.writable and self._unrecorded is None:
            self.journal.check_writable()
        if self._unrecorded is not None:
            job_id, state, payload = self._unrecorded
            self.journal.finish(job_id, state, reason=payload.get("reason", ""), result=_result(payload))
            self._unrecorded = None
            log.info("recorded job %s as %s now that the journal can be written again", job_id, state)
            self.hub.notify()
            return
        if not self.ready.wait(timeout=0.2):
            return
        record = self.journal.claim_next()
        if record is None:
            self.hub.wait_for_change(self.hub.version, timeout=0.5)
            return
        self.run_job(record)

    def request_cancel(self, job_id: str) -> str:
        """Cancel a queued job at once, or flag a running one to stop at its next step; returns its state now."""
        state = self.journal.request_cancel(job_id)
        if state == JobState.RUNNING:
            self._cancel.add(job_id)
        self.hub.notify()
        return state

    def run_job(self, record: JobRecord) -> None:
        from v2vz_engine.run import LocalRunner, as_resource_error, free_device_memory, run_spans

        job_id, job = record.job_id, record.job
        if self.journal.cancel_requested(job_id):
            self.finish(job_id, JobState.CANCELLED, {"reason": "cancelled before it started"})
            return
        attempt = f" (attempt {record.attempts}, after a restart)" if record.attempts > 1 else ""
        log.info(
            "job %s started%s: frames %d..%d of %s", job_id, attempt, job.start, job.start + job.frames - 1, job.source
        )
        began = time.monotonic()
        window = {"window": 0, "windows": 0}  # which window the engine is on: sent with every progress event

        def progress(stage: str, step: int, total: int, cached: bool = False, window_of: int | None = None) -> None:
            if stage == Stage.WINDOW:
                window.update(window=step, windows=total)
            where = dict(window, window=window_of) if window_of is not None else window  # windows running at once
            if cached:
                log.info("job %s: window %d/%d inverted from the cache", job_id, where["window"], where["windows"])
            self.running = (job_id, describe_step(stage, step, total, cached, **where))
            payload = {"stage": stage, "step": step, "total": total, "cached": cached, **where}
            self.hub.emit(job_id, EventType.PROGRESS, payload)

        def on_retry(task, retry: int, most: int, reason: str) -> None:
            number = max(task.window + 1, 0)
            log.warning("job %s: %s runs again (retry %d of %d): %s", job_id, task.label, retry, most, reason)
            payload = {"stage": Stage.RETRY, "step": retry, "total": most, "cached": False, **window}
            self.hub.emit(job_id, EventType.PROGRESS, dict(payload, window=number, reason=reason[:400]))

        def cancel() -> bool:
            return job_id in self._cancel or self.stopping.is_set()

        announced = announced_frames(self.journal, job_id) if record.attempts > 1 else set()

        def on_frame(index: int, path: Path) -> None:
            if index in announced:  # an earlier attempt announced it (same path, written again): each frame once
                return
            self.hub.emit(job_id, EventType.FRAME, {"index": index, "path": str(path)})

        try:
            self.running = (job_id, Stage.START.value)
            self.hub.emit(job_id, EventType.PROGRESS, {"stage": Stage.START, "step": 0, "total": 1, "cached": False})
            if self.cluster is not None:
                runner = self.cluster.runner(job_id, on_retry)
            else:
                runner = LocalRunner(self.slot.pipeline_for(job.model, progress), self.cache)
            result = run_spans(job, runner, progress, cancel, on_frame=on_frame)
        except Cancelled as exc:
            if self.stopping.is_set() and job_id not in self._cancel:
                log.info("job %s interrupted by shutdown; it runs again at the next start", job_id)
                return  # left 'running': recover() re-queues it
            self.finish(job_id, JobState.CANCELLED, {"reason": str(exc)})
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's one-line reason, the worker lives on
            exc = as_resource_error(exc) or exc
            status = status_of(exc)
            if status == "INTERNAL":
                log.exception("job %s failed", job_id)
                first = str(exc).splitlines()[0] if str(exc) else ""
                reason = f"internal error: {type(exc).__name__}: {first}"
            else:
                reason = str(exc)
            self.finish(job_id, JobState.FAILED, {"reason": reason, "code": status})
        else:
            payload = {
                "output": str(result.output) if result.output else "",
                "frame_paths": [str(p) for p in result.frame_paths],
                "timings": result.timings,
                "inversion_cached": result.inversion_cached,
                "seconds": round(time.monotonic() - began, 3),
                "frames": sum(len(span) for span in result.windows),
                "take": job.take or 0,
                "preview": job.preview,
                "sidecar": str(result.sidecar) if result.sidecar else "",
            }
            self.finish(job_id, JobState.DONE, payload)
        finally:
            self.running = None
            self._cancel.discard(job_id)
            if self.cluster is None:  # the model is in this process (a cluster's workers hold their own)
                free_device_memory()

    def finish(self, job_id: str, state: str, payload: dict) -> None:
        """Record the outcome (the terminal event with it); kept for later when the journal cannot be written."""
        try:
            self.journal.finish(job_id, state, reason=payload.get("reason", ""), result=_result(payload))
        except JournalFull as exc:
            log.warning("job %s ended %s but cannot be recorded yet: %s", job_id, state, exc)
            self._unrecorded = (job_id, state, payload)
            return
        log_outcome(job_id, state, payload)
        self.hub.notify()


def log_outcome(job_id: str, state: str, payload: dict) -> None:
    """The daemon log's line for a job that ended: done with its outputs and time, failed with the reason."""
    if state == JobState.DONE:
        output = payload.get("output") or payload.get("out_mp4")
        outputs = [output] if output else []
        if payload.get("frame_paths"):
            outputs.append(f"{len(payload['frame_paths'])} PNG frames in {Path(payload['frame_paths'][0]).parent}")
        cached = " (inversion from the cache)" if payload.get("inversion_cached") else ""
        seconds = payload.get("seconds", 0.0)
        log.info("job %s done in %.1f s: %s%s", job_id, seconds, ", ".join(outputs) or "no outputs", cached)
    elif state == JobState.FAILED:
        log.warning("job %s failed (%s): %s", job_id, payload.get("code", ""), payload.get("reason", ""))
    else:
        log.info("job %s %s: %s", job_id, state, payload.get("reason", ""))


def announced_frames(journal: Journal, job_id: str) -> set[int]:
    """The frame indices a job's earlier attempts announced before a restart interrupted them.

    A re-queued job runs again from its start and writes those frames again to the same paths; announcing them a
    second time would give a watcher (a host placing frames as they come) one frame twice in one job's events.
    """
    return {event.payload["index"] for event in journal.events_after(job_id, 0) if event.kind == EventType.FRAME}


def describe_step(stage: str, step: int, total: int, cached: bool, window: int, windows: int) -> str:
    """What a job does now in a few words, e.g. `edit 12/50 (window 1/2)`, for `v2vz status`."""
    text = f"{stage} {step}/{total}" + (" (cached)" if cached else "")
    return text + (f" (window {window}/{windows})" if windows > 1 and stage != Stage.WINDOW else "")


def _result(payload: dict) -> dict:
    """The outcome's fields besides its reason (the journal keeps the reason in a column of its own)."""
    return {key: value for key, value in payload.items() if key != "reason"}
