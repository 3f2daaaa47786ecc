"""The daemon's job journal: an SQLite file that makes queued and running jobs survive a restart or a crash.

Why SQLite: one file, atomic transactions, and WAL mode lets the gRPC threads read while the worker writes.
One connection guarded by a lock serves every thread of a process; each write runs in `BEGIN IMMEDIATE`, so it is
atomic against another process on the same file too (e.g. a second daemon started by mistake never claims the same
job). `synchronous=FULL` because a submit acknowledged to a client must not vanish on a power cut; the write rate
(a few events a second) makes the fsyncs cheap.

State machine (every transition writes its event in the same transaction, so a watcher that reconnects always
finds the event that matches the state):

    submit          -> queued     + "queued" event {"position": n}
    claim_next      queued -> running (no event: the worker's first "progress" event says it started)
    finish          running -> done | failed | cancelled   + that event {**result, "reason": reason}
    request_cancel  queued -> cancelled + "cancelled" event; running -> only a flag the worker polls
    recover         running -> queued + "queued" event {"position": n, "recovered": true},
                    or -> failed + "failed" event after max_attempts, or -> cancelled if a cancel was pending

`append_event` is therefore only for "progress" and "frame" events. Queue order is submission order (an
AUTOINCREMENT sequence, not the wall clock, which can tie or jump): a re-queued job keeps its place, so an
interrupted job runs again first.

Unknown ids: `get` returns None; every other per-job method raises KeyError.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from v2vz.api.errors import AmbiguousJob, JobNotFound, JournalFull
from v2vz.api.events import FINISHED_STATES, EventType
from v2vz.api.job import EditJob

APPENDABLE_KINDS: tuple[str, ...] = (EventType.PROGRESS, EventType.FRAME)  # the others: the state transitions
SCHEMA_VERSION = 2

_SCHEMA_V1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    job TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    stream_frames INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '{}',
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE TABLE events (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    sequence INTEGER NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
"""

# version -> SQL that upgrades a journal from version - 1.
_MIGRATIONS: dict[int, str] = {
    # 2: previews run ahead of queued finals (priority 1), each class in submission order
    2: """
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_priority ON jobs (state, priority DESC, seq);
""",
}
PREVIEW_PRIORITY = 1


@dataclass(frozen=True)
class JobRecord:
    """One job as the journal knows it; `started` is when the latest attempt started (None while queued)."""

    job_id: str
    state: str
    job: EditJob
    submitted: float
    started: float | None
    finished: float | None
    attempts: int
    reason: str
    client: str
    stream_frames: bool
    result: dict[str, Any] = field(default_factory=dict)  # output paths, timings (finish's `result`)
    cancel_requested: bool = False  # a cancel was asked for while it ran; the worker has not stopped yet


@dataclass(frozen=True)
class EventRecord:
    """One event of a job's stream; `sequence` counts from 1 per job, so a watcher resumes with `events_after`."""

    job_id: str
    sequence: int
    time: float
    kind: str
    payload: dict[str, Any]


class Journal:
    """The jobs and their events in one SQLite file; safe to share between threads (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        on_writable: Callable[[bool], None] | None = None,
    ) -> None:
        """on_writable(False) when a write fails on a full disk, on_writable(True) when one succeeds again."""
        self.path = Path(path)
        self._clock = clock
        self._on_writable = on_writable
        self.writable = True  # the last write succeeded (False: the disk was full)
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _make_private(self.path)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._create_or_migrate()
        except BaseException as error:
            self._db.close()
            if not isinstance(error, sqlite3.DatabaseError):
                raise
            raise RuntimeError(
                f"{self.path} is not a usable v2vz journal ({error}); move it aside and start the daemon again"
            ) from error

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the file's write lock up front so read-then-update is atomic.

        durable=False skips the fsync (WAL + synchronous=NORMAL) for the many progress and frame events of a running
        job: a power cut may lose the last few of them, never a job or its outcome (the next durable write flushes).
        A full disk raises JournalFull and leaves the journal as it was (the transaction is rolled back).
        """
        with self._lock:
            try:
                if not durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    changes = self._db.total_changes
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._db
                        self._db.execute("COMMIT")
                        if self._db.total_changes != changes:
                            self._set_writable(True)
                    except BaseException:
                        with suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                        raise
                finally:
                    if not durable:
                        with suppress(sqlite3.Error):
                            self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.OperationalError as error:
                if _is_disk_error(error):
                    self._set_writable(False)
                    raise JournalFull(
                        f"the daemon cannot record jobs: the disk of {self.path.parent} is full or failing "
                        f"({error}); free some space and try again"
                    ) from error
                raise

    def check_writable(self) -> None:
        """A real write of no meaning (the header's user_version, a counter nothing reads): JournalFull while the disk
        is full, and on_writable(True) once it is not."""
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {(int(version) + 1) % 2**31}")
        self._set_writable(True)

    def _set_writable(self, writable: bool) -> None:
        if writable != self.writable:
            self.writable = writable
            if self._on_writable:
                self._on_writable(writable)

    def _create_or_migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                for statement in _split_sql(_SCHEMA_V1):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (1)")
                row = (1,)
            version = row[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer v2vz (journal schema {version}, this one reads up to "
                    f"{SCHEMA_VERSION}); upgrade v2vz or point the daemon at another journal"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(_MIGRATIONS[target]):
                    db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (target,))

    # -- jobs ------------------------------------------------------------------------------------------------

    def submit(self, job: EditJob, client: str = "", stream_frames: bool = False) -> JobRecord:
        """Queue a job; its "queued" event's position is 1-based: 1 = the next to run after the running one."""
        job_json = json.dumps(job.to_dict(), sort_keys=True)
        job_id = uuid.uuid4().hex[:12]
        now = self._clock()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO jobs (job_id, state, job, submitted, client, stream_frames, priority) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, job_json, now, client, int(stream_frames), PREVIEW_PRIORITY if job.preview else 0),
            )
            position = self._position(db, cursor.lastrowid)
            self._insert_event(db, job_id, "queued", {"position": position}, now)
            return self._fetch(db, job_id)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def list(self, limit: int = 50, before: str | None = None) -> list[JobRecord]:
        """The newest `limit` jobs (limit >= 1), newest first; with `before`, those submitted before that job."""
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        with self._lock:
            if before is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE seq < (SELECT seq FROM jobs WHERE job_id = ?) "
                    "ORDER BY seq DESC LIMIT ?",
                    (before, limit),
                ).fetchall()
        return [_record(row) for row in rows]

    def unfinished(self) -> list[JobRecord]:
        """The queued and running jobs, oldest first: what SubmitEdit checks a new job's outputs against."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY seq"
            ).fetchall()
        return [_record(row) for row in rows]

    def running(self) -> list[JobRecord]:
        """The jobs left 'running' (at start: by a daemon that died or stopped mid-job), oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY seq").fetchall()
        return [_record(row) for row in rows]

    def resolve(self, prefix: str) -> str:
        """The job id that `prefix` starts (ids are 12 hex digits; any unique prefix names a job).

        JobNotFound when none does, AmbiguousJob (one line listing them) when several do.
        """
        prefix = prefix.strip().lower()
        if not prefix or len(prefix) > 32 or not _HEX.fullmatch(prefix):
            raise JobNotFound(f"no job {prefix[:40]!r}: `v2vz jobs` lists the known ones")
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE substr(job_id, 1, ?) = ? ORDER BY seq DESC LIMIT 6",
                (len(prefix), prefix),
            ).fetchall()
        if not rows:
            raise JobNotFound(f"no job {prefix!r}: `v2vz jobs` lists the known ones")
        if len(rows) > 1:
            more = ", ..." if len(rows) > 5 else ""
            matches = ", ".join(row[0] for row in rows[:5]) + more
            raise AmbiguousJob(f"{prefix!r} starts more than one job id ({matches}): give more of it")
        return rows[0][0]

    def count(self, state: str) -> int:
        """How many jobs are in `state`."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def queue_position(self, job_id: str) -> int:
        """1-based place among queued jobs in the order they run (previews first, each class in submission order;
        1 = runs next); 0 if the job is not queued."""
        with self._lock:
            row = self._db.execute("SELECT seq, state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            return self._position(self._db, row[0]) if row[1] == "queued" else 0

    def claim_next(self) -> JobRecord | None:
        """Move the next queued job to running (attempts + 1) and return it; None when nothing is queued.

        The next is the oldest queued preview, else the oldest queued job: a preview lands in seconds even behind a
        queue of long finals."""
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT job_id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = 'running', started = ?, attempts = attempts + 1 WHERE job_id = ?",
                (now, row[0]),
            )
            return self._fetch(db, row[0])

    def finish(self, job_id: str, state: str, reason: str = "", result: dict[str, Any] | None = None) -> None:
        """End a running job and write its terminal event, payload {**result, "reason": reason}, with it.

        The flat payload is what the wire's Done/Failed/Cancelled messages need (output, frame_paths, timings,
        inversion_cached / code); the caller must not append the event itself. Only a running job can be finished:
        a second finish is a bug in the caller, so it raises ValueError.
        """
        if state not in FINISHED_STATES:
            raise ValueError(f"a job finishes as one of {', '.join(sorted(FINISHED_STATES))}, not {state!r}")
        result = dict(result or {})
        result_json = json.dumps(result, sort_keys=True)
        now = self._clock()
        with self._write() as db:
            current = self._state(db, job_id)
            if current != "running":
                raise ValueError(f"job {job_id} is {current}, not running: it cannot finish as {state}")
            db.execute(
                "UPDATE jobs SET state = ?, finished = ?, reason = ?, result = ? WHERE job_id = ?",
                (str(state), now, reason, result_json, job_id),
            )
            self._insert_event(db, job_id, str(state), {**result, "reason": reason}, now)

    def request_cancel(self, job_id: str, reason: str = "cancelled before it started") -> str:
        """Cancel a queued job at once; for a running one set the flag the worker polls. Returns the state now.

        "cancelled" (was queued), "running" (the worker will stop and finish it as cancelled), or the finished
        state unchanged. `reason` is only used for a queued job: the worker gives its own when it stops.
        """
        now = self._clock()
        with self._write() as db:
            current = self._state(db, job_id)
            if current == "queued":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', finished = ?, reason = ?, cancel_requested = 1 "
                    "WHERE job_id = ?",
                    (now, reason, job_id),
                )
                self._insert_event(db, job_id, "cancelled", {"reason": reason}, now)
                return "cancelled"
            if current == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?", (job_id,))
            return current

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel was asked for: the worker polls this between steps."""
        with self._lock:
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return bool(row[0])

    def recover(self, max_attempts: int = 3) -> list[str]:
        """At daemon start, before the worker runs: settle the jobs that were running when the daemon died.

        Each goes back to the queue (keeping its place), or fails once it was interrupted max_attempts times (a
        job that keeps killing the daemon, e.g. out of memory, must not block the queue forever), or is cancelled
        if a cancel was pending. Returns the ids put back in the queue.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, got {max_attempts}")
        now = self._clock()
        requeued: list[str] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT job_id, attempts, started, cancel_requested FROM jobs WHERE state = 'running' ORDER BY seq"
            ).fetchall()
            for job_id, attempts, started, cancel_pending in rows:
                if cancel_pending:
                    reason = "cancelled (the daemon stopped while the job was being cancelled)"
                    state = "cancelled"
                elif attempts >= max_attempts:
                    when = "at an unknown time" if started is None else f"at {_utc(started)}"
                    reason = (
                        f"interrupted {attempts} times; the last attempt started {when} and the daemon stopped "
                        "before it finished - resubmit it (with fewer frames or a smaller size if the daemon ran "
                        "out of memory)"
                    )
                    state = "failed"
                else:
                    db.execute("UPDATE jobs SET state = 'queued', started = NULL WHERE job_id = ?", (job_id,))
                    requeued.append(job_id)
                    continue
                db.execute(
                    "UPDATE jobs SET state = ?, finished = ?, reason = ? WHERE job_id = ?",
                    (state, now, reason, job_id),
                )
                self._insert_event(db, job_id, state, {"reason": reason}, now)
            for job_id in requeued:  # positions once every recovered job is back in place
                seq = db.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]
                self._insert_event(db, job_id, "queued", {"position": self._position(db, seq), "recovered": True}, now)
        return requeued

    # -- events ----------------------------------------------------------------------------------------------

    def append_event(self, job_id: str, kind: str, payload: dict[str, Any]) -> EventRecord:
        """Add a "progress" or "frame" event to a queued or running job; payload must be JSON (paths, not PNGs)."""
        if kind not in APPENDABLE_KINDS:
            raise ValueError(
                f"append_event takes {' or '.join(APPENDABLE_KINDS)} events, not {kind!r}: "
                "queued/done/failed/cancelled are written by submit, finish, request_cancel and recover"
            )
        now = self._clock()
        with self._write(durable=False) as db:
            current = self._state(db, job_id)
            if current in FINISHED_STATES:
                raise ValueError(f"job {job_id} is {current}: it takes no more events")
            return self._insert_event(db, job_id, kind, payload, now)

    def record_position(self, job_id: str) -> bool:
        """Add a "queued" event {"position": n} when a queued job's place differs from its last "queued" event's
        (the jobs ahead started, were cancelled, or a preview went ahead); True when one was added. Read first,
        written only on a change (and checked again inside the write): streams call it whenever anything changes."""

        def changed(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT seq, state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None or row[1] != "queued":
                return None
            position = self._position(db, row[0])
            told = db.execute(
                "SELECT payload FROM events WHERE job_id = ? AND kind = 'queued' ORDER BY sequence DESC LIMIT 1",
                (job_id,),
            ).fetchone()
            return None if told is not None and json.loads(told[0]).get("position") == position else position

        with self._lock:
            if changed(self._db) is None:
                return False
        with self._write(durable=False) as db:
            position = changed(db)
            if position is None:
                return False
            self._insert_event(db, job_id, "queued", {"position": position}, self._clock())
            return True

    def events_after(self, job_id: str, after: int) -> list[EventRecord]:
        """The job's events with sequence > after, oldest first (after=0: all of them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, sequence, time, kind, payload FROM events WHERE job_id = ? AND sequence > ? "
                "ORDER BY sequence",
                (job_id, after),
            ).fetchall()
            if not rows and self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                raise KeyError(job_id)
        return [EventRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    # -- helpers (callers hold the lock) ---------------------------------------------------------------------

    @staticmethod
    def _position(db: sqlite3.Connection, seq: int) -> int:
        """Queued jobs that run before the job `seq`, itself included (claim_next's order)."""
        return db.execute(
            "SELECT COUNT(*) FROM jobs AS other, (SELECT priority FROM jobs WHERE seq = ?) AS this "
            "WHERE other.state = 'queued' AND (other.priority > this.priority "
            "OR (other.priority = this.priority AND other.seq <= ?))",
            (seq, seq),
        ).fetchone()[0]

    @staticmethod
    def _state(db: sqlite3.Connection, job_id: str) -> str:
        row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return row[0]

    @staticmethod
    def _fetch(db: sqlite3.Connection, job_id: str) -> JobRecord:
        return _record(db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone())

    @staticmethod
    def _insert_event(
        db: sqlite3.Connection, job_id: str, kind: str, payload: dict[str, Any], now: float
    ) -> EventRecord:
        """Next sequence number for the job, inside the caller's write transaction (so it cannot be taken twice)."""
        payload_json = json.dumps(payload, sort_keys=True)
        sequence = db.execute(
            "SELECT COALESCE(MAX(sequence), 0) + 1 FROM events WHERE job_id = ?", (job_id,)
        ).fetchone()[0]
        db.execute(
            "INSERT INTO events (job_id, sequence, time, kind, payload) VALUES (?, ?, ?, ?, ?)",
            (job_id, sequence, now, kind, payload_json),
        )
        return EventRecord(job_id, sequence, now, kind, json.loads(payload_json))


_HEX = re.compile(r"[0-9a-f]+")
_COLUMNS = (
    "job_id, state, job, submitted, started, finished, attempts, reason, client, stream_frames, result, "
    "cancel_requested"
)


def _record(row: tuple[Any, ...]) -> JobRecord:
    job_id, state, job, submitted, started, finished, attempts, reason, client, stream, result, cancel = row
    return JobRecord(
        job_id=job_id,
        state=state,
        job=EditJob.from_dict(json.loads(job)),
        submitted=submitted,
        started=started,
        finished=finished,
        attempts=attempts,
        reason=reason,
        client=client,
        stream_frames=bool(stream),
        result=json.loads(result),
        cancel_requested=bool(cancel),
    )


def _make_private(path: Path) -> None:
    """Create the journal file readable by its user only (its -wal and -shm files take the same mode), and tighten
    the files of a journal written by an older daemon: they hold every prompt and path."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def _is_disk_error(error: sqlite3.Error) -> bool:
    """SQLITE_FULL, or an I/O error (a WAL append on a full disk reports one): the disk, not the data, is wrong."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code == sqlite3.SQLITE_FULL or code & 0xFF == sqlite3.SQLITE_IOERR
    return "full" in str(error).lower() or "disk i/o" in str(error).lower()


def _split_sql(script: str) -> list[str]:
    """executescript() would COMMIT our transaction first, so schema scripts run statement by statement."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
