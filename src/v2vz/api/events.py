"""What a job's events are and what they mean: the names on the wire, their JSON form, and a job's outcome.

The engine reports stages by these names, the daemon sends them (`JobEvent` in proto/), the CLI prints their JSON
lines (docs/events.md) and turns the last one into an exit code; the watch folder reads the same outcome. The host
plugins, which cannot import this package, read the JSON lines through plugins/host/v2vz_host.py, whose names a
test holds equal to these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    MASK = "mask"  # a local edit's window is done: step of total frames had something to edit; reason: which not
    WRITE = "write"  # the outputs are finished
    RETRY = "retry"  # a cluster worker died mid-window: the window runs again elsewhere (step: retry, total: most)


class JobState(StrEnum):
    """A job's state in the daemon's journal and in `v2vz jobs`."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        """Whether a job in this state has ended (done, failed or cancelled): nothing more happens to it."""
        return self in FINISHED_STATES


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
    the event belongs to, which is otherwise the last `window` stage's. `reason`: what the user should know of the
    stage (a mask event's frames with nothing to edit).
    """

    def __call__(
        self,
        stage: Stage,
        step: int,
        total: int,
        cached: bool = False,
        window_of: int | None = None,
        reason: str = "",
    ) -> None: ...


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress event of a running job, in each of its forms: the journal's record (a JSON object), the wire's
    `Progress` and the JSON line of `--events jsonl`. Only this class knows how one maps to the other."""

    stage: str
    step: int
    total: int
    cached: bool = False
    window: int = 0  # the window (1-based) the stage belongs to; 0 before the first
    windows: int = 0  # windows in the job; 0: not known yet
    reason: str = ""  # stage retry: why the window runs again; stage mask: the frames with nothing to edit

    def to_record(self) -> dict[str, Any]:
        """The journal's payload (the reason only when there is one, as the JSON line has it)."""
        record = {"stage": str(self.stage), "step": self.step, "total": self.total, "cached": self.cached}
        record.update(window=self.window, windows=self.windows)
        if self.reason:
            record["reason"] = self.reason
        return record

    to_dict = to_record  # the JSON line's fields are the record's

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ProgressUpdate:
        """From a journal payload (older daemons wrote no window, windows or reason)."""
        return cls(**{name: record[name] for name in _PROGRESS_FIELDS if name in record})

    def to_wire(self) -> pb.Progress:
        from v2vz.api.v1 import editor_pb2 as pb

        return pb.Progress(**self.to_record())

    @classmethod
    def from_wire(cls, progress: pb.Progress) -> ProgressUpdate:
        return cls(**{name: getattr(progress, name) for name in _PROGRESS_FIELDS})


_PROGRESS_FIELDS = ("stage", "step", "total", "cached", "window", "windows", "reason")


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended, in each of its forms: the journal's terminal record, the wire's `Done`/`Failed`/`Cancelled`
    and the JSON line. A done job has its outputs and times; a failed one its reason and gRPC status name (`code`);
    a cancelled one its reason. The legacy `out_mp4` key of protocol-4 journals is read here and nowhere else."""

    state: JobState
    reason: str = ""
    code: str = ""  # failed only: the gRPC status name the reason maps to
    output: str = ""  # done only, from here on: the file (or frame pattern) written; empty: none
    frame_paths: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    inversion_cached: bool = False
    seconds: float = 0.0
    frames: int = 0
    take: int = 0
    preview: bool = False
    sidecar: str = ""

    def result(self) -> dict[str, Any]:
        """The journal's record of the outcome besides its reason (the journal keeps that in a column of its own)."""
        if self.state == JobState.DONE:
            done = {name: getattr(self, name) for name in _DONE_FIELDS}
            return dict(done, frame_paths=list(self.frame_paths), timings=dict(self.timings))
        return {"code": self.code} if self.state == JobState.FAILED else {}

    @classmethod
    def from_record(cls, state: str, record: dict[str, Any]) -> JobOutcome:
        """From a terminal event's payload in the journal, whichever protocol's daemon wrote it."""
        frame_paths = tuple(record.get("frame_paths", ()))
        return cls(
            state=JobState(state),
            reason=record.get("reason", ""),
            code=record.get("code", ""),
            output=record.get("output", record.get("out_mp4", "")),  # journals of protocol 4 say out_mp4
            frame_paths=frame_paths,
            timings=dict(record.get("timings", {})),
            inversion_cached=record.get("inversion_cached", False),
            seconds=record.get("seconds", 0.0),
            frames=record.get("frames", len(frame_paths)),
            take=record.get("take") or 0,
            preview=record.get("preview", False),
            sidecar=record.get("sidecar", ""),
        )

    def to_wire(self) -> pb.Done | pb.Failed | pb.Cancelled:
        """The JobEvent field named after the state (`done`, `failed`, `cancelled`)."""
        from v2vz.api.v1 import editor_pb2 as pb

        if self.state == JobState.DONE:
            return pb.Done(**self.result())
        if self.state == JobState.FAILED:
            return pb.Failed(reason=self.reason, code=self.code)
        return pb.Cancelled(reason=self.reason)

    @classmethod
    def from_wire(cls, event: pb.JobEvent) -> JobOutcome | None:
        """The outcome a terminal event carries; None for any other event."""
        kind = event.WhichOneof("kind")
        if kind == EventType.DONE:
            done = {name: getattr(event.done, name) for name in _DONE_FIELDS}
            done.update(frame_paths=tuple(done["frame_paths"]), timings=dict(done["timings"]))
            return cls(JobState.DONE, **done)
        if kind == EventType.FAILED:
            return cls(JobState.FAILED, reason=event.failed.reason, code=event.failed.code)
        if kind == EventType.CANCELLED:
            return cls(JobState.CANCELLED, reason=event.cancelled.reason)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON line's fields (docs/events.md): empty outputs as null, timings sorted by name."""
        if self.state == JobState.DONE:
            return {
                "output": self.output or None,
                "frame_paths": list(self.frame_paths),
                "take": self.take or None,
                "preview": self.preview,
                "sidecar": self.sidecar or None,
                "timings": {name: self.timings[name] for name in sorted(self.timings)},
                "inversion_cached": self.inversion_cached,
                "seconds": self.seconds,
                "frames": self.frames,
            }
        if self.state == JobState.FAILED:
            return {"reason": self.reason, "code": self.code}
        return {"reason": self.reason}


# A done outcome's fields: the names of the wire's Done and of its journal record.
_DONE_FIELDS = (
    "output",
    "frame_paths",
    "timings",
    "inversion_cached",
    "seconds",
    "frames",
    "take",
    "preview",
    "sidecar",
)


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
        data.update(ProgressUpdate.from_wire(event.progress).to_dict())
    elif kind == EventType.FRAME:
        data.update(index=event.frame.index, path=event.frame.path or None)
    elif kind in TERMINAL_TYPES:
        data.update(JobOutcome.from_wire(event).to_dict())
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
    ended = JobOutcome.from_wire(last) if last is not None else None
    if ended is None:
        message = f"the daemon ended the events of job {job_id} before it finished: `v2vz attach {job_id}`"
        return Outcome(None, EXIT_FAILED, message)
    if ended.state == JobState.DONE:
        return Outcome(JobState.DONE, EXIT_OK)
    if ended.state == JobState.FAILED:
        message = ended.reason or f"job {job_id} failed ({ended.code or 'no reason given'})"
        return Outcome(JobState.FAILED, exit_code_for_status(ended.code), message)
    reason = f": {ended.reason}" if ended.reason else ""
    return Outcome(JobState.CANCELLED, EXIT_FAILED, f"job {job_id} was cancelled{reason}")


def error_line(error: BaseException) -> dict[str, Any]:
    """The `error` JSON line of `--events jsonl`: why the job could not be submitted or followed, typed for plugins."""
    return {
        "type": EventType.ERROR.value,
        "error": type(error).__name__,
        "status": getattr(error, "status", "UNKNOWN"),
        "message": str(error),
    }
