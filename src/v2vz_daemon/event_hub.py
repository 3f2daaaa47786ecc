"""Job events from the journal to the watchers: record, wake every stream, and turn journal events into wire events.

Events are written to the journal first (so a watcher that reconnects finds them), then a version counter is bumped
and every waiting stream wakes and reads what is new. Streams never wait on each other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from v2vz.api.errors import JournalFull
from v2vz.api.events import FINISHED_STATES, TERMINAL_TYPES, EventType
from v2vz.api.v1 import editor_pb2 as pb
from v2vz_daemon.journal import EventRecord, Journal

FRAME_CHUNK = 1024 * 1024  # a streamed frame's PNG goes in chunks of this size


class EventHub:
    """Appends events to the journal and wakes the streams that wait for news."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._changed = threading.Condition()
        self._version = 0  # bumped on every change: watchers wait only when nothing new has happened

    @property
    def version(self) -> int:
        return self._version

    def emit(self, job_id: str, kind: str, payload: dict) -> EventRecord:
        """Record a progress or frame event of a running job and wake the watchers."""
        event = self.journal.append_event(job_id, kind, payload)
        self.notify()
        return event

    def notify(self) -> None:
        """Something changed (an event, a state, a shutdown): wake every waiting stream and the worker."""
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """Wait until the version differs from `seen` (or the timeout); returns the version now."""
        with self._changed:
            if self._version == seen:
                self._changed.wait(timeout)
            return self._version

    def record_position(self, job_id: str) -> None:
        """A watched job that is still queued gets a new "queued" event when the jobs ahead of it changed (they
        started, were cancelled, or a preview went ahead): what its followers show is never stale. Recorded (with
        its sequence) like every event, so a follower that re-attaches, or replays the history, sees it too."""
        try:
            recorded = self.journal.record_position(job_id)
        except JournalFull:
            return  # a full disk: the position waits, the stream goes on
        if recorded:
            self.notify()

    def final_event(self, job_id: str) -> EventRecord | None:
        """The done/failed/cancelled event of a finished job, else None."""
        record = self.journal.get(job_id)
        if record is None or record.state not in FINISHED_STATES:
            return None
        events = self.journal.events_after(job_id, 0)
        return next((e for e in reversed(events) if e.kind in TERMINAL_TYPES), None)


def to_wire(event: EventRecord, stream_frames: bool) -> Iterator[pb.JobEvent]:
    """One journal event as wire events: a frame with stream_frames is sent as PNG chunks with one sequence."""
    base = dict(job_id=event.job_id, sequence=event.sequence, time_unix=event.time)
    payload = event.payload
    if event.kind == EventType.QUEUED:
        # The journal counts from 1 (1: next to run); the wire counts the queued jobs ahead (0: next to run).
        position = max(0, payload.get("position", 1) - 1)
        yield pb.JobEvent(**base, queued=pb.Queued(position=position, requeued=bool(payload.get("recovered"))))
    elif event.kind == EventType.PROGRESS:
        yield pb.JobEvent(**base, progress=pb.Progress(**payload))
    elif event.kind == EventType.FRAME:
        data = b""
        if stream_frames:
            try:
                data = Path(payload["path"]).read_bytes()
            except OSError:
                data = b""
        chunks = max(1, -(-len(data) // FRAME_CHUNK))
        for chunk in range(chunks):
            piece = data[chunk * FRAME_CHUNK : (chunk + 1) * FRAME_CHUNK]
            frame = pb.FrameReady(index=payload["index"], path=payload["path"], png=piece, chunk=chunk, chunks=chunks)
            yield pb.JobEvent(**base, frame=frame)
    elif event.kind == EventType.DONE:
        yield pb.JobEvent(
            **base,
            done=pb.Done(
                output=payload.get("output", payload.get("out_mp4", "")),  # journals of protocol 4 say out_mp4
                frame_paths=payload.get("frame_paths", []),
                timings=payload.get("timings", {}),
                inversion_cached=payload.get("inversion_cached", False),
                seconds=payload.get("seconds", 0.0),
                frames=payload.get("frames", len(payload.get("frame_paths", []))),
                take=payload.get("take") or 0,
                preview=payload.get("preview", False),
                sidecar=payload.get("sidecar", ""),
            ),
        )
    elif event.kind == EventType.FAILED:
        yield pb.JobEvent(**base, failed=pb.Failed(reason=payload.get("reason", ""), code=payload.get("code", "")))
    elif event.kind == EventType.CANCELLED:
        yield pb.JobEvent(**base, cancelled=pb.Cancelled(reason=payload.get("reason", "")))
