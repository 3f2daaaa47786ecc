"""The daemon's cancels: one registry for every job loop, so a cancel reaches a job whichever thread runs it."""

from __future__ import annotations

import threading

from v2vz.api.events import JobState
from v2vz_daemon.event_hub import EventHub
from v2vz_daemon.journal import Journal


class CancelRegistry:
    """Cancels a queued job at once (in the journal); flags a running one, which stops at its next step."""

    def __init__(self, journal: Journal, hub: EventHub) -> None:
        self.journal = journal
        self.hub = hub
        self._flags: set[str] = set()
        self._lock = threading.Lock()

    def request(self, job_id: str) -> str:
        """Cancel `job_id`; returns its state now (cancelled, running, or how it had ended)."""
        state = self.journal.request_cancel(job_id)
        if state == JobState.RUNNING:
            with self._lock:
                self._flags.add(job_id)
        self.hub.notify()
        return state

    def requested(self, job_id: str) -> bool:
        """Whether a cancel of the running `job_id` was asked for (the engine polls this between steps)."""
        return job_id in self._flags

    def clear(self, job_id: str) -> None:
        """The job stopped (or ended): its flag goes."""
        with self._lock:
            self._flags.discard(job_id)
