"""What a job's events are and what they mean: the names on the wire, their JSON form, and a job's outcome.

The engine reports stages by these names, the daemon sends them (`JobEvent` in proto/), the CLI prints their JSON
lines (docs/events.md) and turns the last one into an exit code; the watch folder reads the same outcome. The host
plugins, which cannot import this package, read the JSON lines through plugins/host/v2vz_host.py, whose names a
test holds equal to these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from v2vz.api.errors import EXIT_FAILED, EXIT_OK, exit_code_for_status

if TYPE_CHECKING:
    from v2vz.api.v1 import editor_pb2 as pb


class Stage(StrEnum):
    """The stages of a job, in the order they come (`window` ... `edit` once per window)."""

    START = "start"  # the job left the queue
    LOAD_MODEL = "load-model"  # the job's model is loaded onto the device (the one there before is evicted)
    ANCHORS = "anchors"  # anchored windows: the anchor frames spread over the range are edited first, together
    WINDOW = "window"  # a window of frames starts (step: the window, total: the windows)
    INVERSION = "inversion"  # DDIM inversion of the window (cached: from the daemon's cache, complete at once)
    NULL_TEXT = "null-text"  # null-text optimization (only with inversion null-text, and not from the cache)
    EDIT = "edit"  # the edit's diffusion steps
    WRITE = "write"  # the outputs are finished
    RETRY = "retry"  # a cluster worker died mid-window: the window runs again elsewhere (step: retry, total: most)


class JobState(StrEnum):
    """A job's state in the daemon's journal and in `v2vz jobs`."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    """The `type` of a JSON line: the kind of a daemon event, or one of the CLI's own lines."""

    QUEUED = "queued"
    PROGRESS = "progress"
    FRAME = "frame"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUBMITTED = "submitted"  # `v2vz edit` only: the daemon accepted the job (no sequence, no time)
    ERROR = "error"  # the CLI only: the job could not be submitted or followed (no sequence, no time)


FINISHED_STATES: frozenset[str] = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
TERMINAL_TYPES: frozenset[str] = frozenset({EventType.DONE, EventType.FAILED, EventType.CANCELLED})
# WatchJob's initial metadata, sent before any event: the stream is attached (a re-attach that succeeded, even to a
# queued job with nothing new to say, so that a follower's reconnect deadline starts again).
WATCHING_METADATA_KEY = "v2vz-watching"
DAEMON_EVENT_TYPES: tuple[str, ...] = (  # what the daemon sends (JobEvent's kinds); submitted and error are the CLI's
    EventType.QUEUED,
    EventType.PROGRESS,
    EventType.FRAME,
    EventType.DONE,
    EventType.FAILED,
    EventType.CANCELLED,
)


class ProgressFn(Protocol):
    """How the engine reports progress: a stage, the steps done and the steps in it, and whether it came cached.

    `window_of` (1-based; 0: the anchor pass) comes only when several windows run at once (a cluster): the window
    the event belongs to, which is otherwise the last `window` stage's.
    """

    def __call__(
        self, stage: Stage, step: int, total: int, cached: bool = False, window_of: int | None = None
    ) -> None: ...


def event_to_dict(event: pb.JobEvent) -> dict[str, Any]:
    """One event as plain JSON values, for `--events jsonl` (docs/events.md). PNG bytes are left out."""
    kind = event.WhichOneof("kind")
    data: dict[str, Any] = {
        "job_id": event.job_id,
        "sequence": event.sequence,
        "time": event.time_unix,
        "type": kind if kind in DAEMON_EVENT_TYPES else "unknown",
    }
    if kind == EventType.QUEUED:
        data["position"] = event.queued.position
        if event.queued.requeued:  # only then: the line stays what it was for the usual case
            data["requeued"] = True
    elif kind == EventType.PROGRESS:
        progress = event.progress
        data.update(stage=progress.stage, step=progress.step, total=progress.total, cached=progress.cached)
        data.update(window=progress.window, windows=progress.windows)
        if progress.reason:  # only a retry has one
            data["reason"] = progress.reason
    elif kind == EventType.FRAME:
        data.update(index=event.frame.index, path=event.frame.path or None)
    elif kind == EventType.DONE:
        done = event.done
        data.update(
            output=done.output or None,
            frame_paths=list(done.frame_paths),
            take=done.take or None,
            preview=done.preview,
            sidecar=done.sidecar or None,
            timings={name: done.timings[name] for name in sorted(done.timings)},
            inversion_cached=done.inversion_cached,
            seconds=done.seconds,
            frames=done.frames,
        )
    elif kind == EventType.FAILED:
        data.update(reason=event.failed.reason, code=event.failed.code)
    elif kind == EventType.CANCELLED:
        data["reason"] = event.cancelled.reason
    return data


@dataclass(frozen=True)
class Outcome:
    """How a followed job ended: the CLI's exit code and, unless it is done, the one line that says why."""

    state: str | None  # done, failed, cancelled; None: the events stopped before the job ended
    exit_code: int
    message: str = ""

    @property
    def done(self) -> bool:
        return self.state == JobState.DONE


def outcome(job_id: str, last: pb.JobEvent | None) -> Outcome:
    """The outcome of a job from its last event (the terminal one, or whatever came last if the stream broke off)."""
    kind = last.WhichOneof("kind") if last is not None else None
    if kind == EventType.DONE:
        return Outcome(JobState.DONE, EXIT_OK)
    if kind == EventType.FAILED:
        failed = last.failed
        message = failed.reason or f"job {job_id} failed ({failed.code or 'no reason given'})"
        return Outcome(JobState.FAILED, exit_code_for_status(failed.code), message)
    if kind == EventType.CANCELLED:
        reason = f": {last.cancelled.reason}" if last.cancelled.reason else ""
        return Outcome(JobState.CANCELLED, EXIT_FAILED, f"job {job_id} was cancelled{reason}")
    return Outcome(
        None, EXIT_FAILED, f"the daemon ended the events of job {job_id} before it finished: `v2vz attach {job_id}`"
    )


def error_line(error: BaseException) -> dict[str, Any]:
    """The `error` JSON line of `--events jsonl`: why the job could not be submitted or followed, typed for plugins."""
    return {
        "type": EventType.ERROR.value,
        "error": type(error).__name__,
        "status": getattr(error, "status", "UNKNOWN"),
        "message": str(error),
    }
