"""Job events from the journal to the watchers: record, and wake every stream (wire.py turns them into wire events).

Events are written to the journal first (so a watcher that reconnects finds them), then a version counter is bumped
and every waiting stream wakes and reads what is new. Streams never wait on each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from v2vz.api.errors import JournalFull
from v2vz.api.events import TERMINAL_TYPES, EventType, JobState, ProgressUpdate
from v2vz_daemon.journal import EventRecord, Journal


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

    def progress(self, job_id: str, update: ProgressUpdate) -> EventRecord:
        """Record a progress event of a running job and wake the watchers."""
        return self.emit(job_id, EventType.PROGRESS, update.to_record())

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

    def follow(self, job_id: str, after: int, keep_going: Callable[[], bool]) -> Iterator[EventRecord]:
        """A job's events after sequence `after`, as they come, up to its terminal event, while keep_going() holds.

        Attached past the end of an ended job, the terminal event comes again: the watcher learns how it ended."""
        final = self.final_event(job_id)
        if final is not None and final.sequence <= after:
            yield final
            return
        while True:
            seen = self.version
            for event in self.journal.events_after(job_id, after):
                yield event
                after = event.sequence
                if event.kind in TERMINAL_TYPES:
                    return
            self.record_position(job_id)  # the jobs ahead changed: a new "queued" event, read on the next turn
            if not keep_going():
                return
            self.wait_for_change(seen, timeout=1.0)

    def final_event(self, job_id: str) -> EventRecord | None:
        """The done/failed/cancelled event of a finished job, else None."""
        record = self.journal.get(job_id)
        if record is None or not JobState(record.state).is_terminal():
            return None
        events = self.journal.events_after(job_id, 0)
        return next((e for e in reversed(events) if e.kind in TERMINAL_TYPES), None)
