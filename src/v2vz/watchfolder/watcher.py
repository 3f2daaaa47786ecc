"""The watcher: scans IN, submits settled clips to the daemon, follows their jobs and files the clips away.

Every file is edited exactly once: the state file (state.py) records the daemon's job of each submitted clip, so a
watcher that is restarted (or killed) re-attaches instead of submitting again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from v2vz.api.errors import (
    DaemonUnavailable,
    InvalidArgument,
    JobLost,
    JobNotFound,
    MediaError,
    MediaNotFound,
    V2vzError,
    one_line,
)
from v2vz.api.events import EventType, JobState, outcome
from v2vz.api.files import write_atomic
from v2vz.api.job import EditJob
from v2vz.watchfolder.reporter import Reporter
from v2vz.watchfolder.settings import DEFAULTS_NAME, MatteNames, is_matte_name, is_video, readable, resolve_job
from v2vz.watchfolder.state import STATE_NAME, State

if TYPE_CHECKING:
    from v2vz.api.v1 import editor_pb2 as pb
    from v2vz.client import Client

DONE_DIR, FAILED_DIR = "done", "failed"
IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})  # our own reads must not wake the loop


@dataclass
class Seen:
    """A video in IN as the scans saw it."""

    signature: tuple[int, int]  # size, mtime_ns
    since: float  # monotonic time the signature was first seen
    complete_at: float | None = None
    waiting: str | None = None  # the line reported while it waits for a prompt


class Watcher:
    def __init__(self, in_dir: Path, out_dir: Path, settle: float, once: bool, reporter: Reporter):
        self.in_dir, self.out_dir, self.settle, self.once = in_dir, out_dir, settle, once
        self.poll = max(0.05, min(0.25, settle / 4))
        self.reporter = reporter
        self.state = State(in_dir / STATE_NAME)
        self.seen: dict[str, Seen] = {}
        self.settings_seen: dict[Path, tuple[tuple[int, int], float]] = {}
        self.mattes = MatteNames(in_dir)
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()
        self.jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.fatal: str | None = None
        self.order = 0
        self.client: Client | None = None
        self.follower_client: Client | None = None
        self.daemon_lock = threading.Lock()
        self.daemon_away = False  # said "waiting for the daemon" and not yet "the daemon is back"

    # -- running ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        from v2vz.client import Client

        watcher = self

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in IGNORED_EVENTS:
                    return
                names = [os.path.basename(os.fsdecode(p)) for p in (event.src_path, event.dest_path) if p]
                if any(not name.startswith(".") for name in names):
                    watcher.wake.set()

        self.client = Client()
        self.client.info()  # no daemon: DaemonUnavailable, before anything moves
        self.follower_client = Client()
        mode = "processing" if self.once else "watching"
        self.reporter.line(f"{mode} {self.in_dir} -> {self.out_dir} (files settle for {self.settle:g} s)")
        self.restore()
        observer = Observer()
        observer.schedule(Wake(), str(self.in_dir), recursive=False)
        observer.start()
        follower = threading.Thread(target=self.follow_all, name="v2vz-watch-follow", daemon=True)
        follower.start()
        try:
            while not self.stop.is_set():
                self.wake.clear()
                self.scan()
                if self.once and self.finished():
                    break
                if self.wake.wait(self.poll if self.unsettled() else 1.0):
                    self.stop.wait(0.02)  # let a burst of events (a copy in progress) coalesce into one scan
        except KeyboardInterrupt:
            pass
        finally:
            self.stop.set()
            self.jobs.put(None)
            # watchdog logs a harmless error when its inotify thread is stopped while it reads an event
            logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
            observer.stop()
            close_quietly(self.follower_client)
            follower.join(2.0)
            with contextlib.suppress(Exception):
                observer.join(2.0)
            close_quietly(self.client)
        if self.fatal:
            raise DaemonUnavailable(self.fatal)
        with self.lock:
            left = len(self.in_flight)
        if left:
            self.reporter.line(
                f"stopped: {left} job(s) keep running in the daemon; the next `v2vz watch` of {self.in_dir} "
                "collects them"
            )

    def finished(self) -> bool:
        """--once: every video present settled and either went to the daemon or waits, and every job ended."""
        with self.lock:
            if self.in_flight:
                return False
        return all(seen.waiting is not None for seen in self.seen.values())

    def unsettled(self) -> bool:
        return any(seen.waiting is None for seen in self.seen.values())

    # -- restart ---------------------------------------------------------------------------------------------

    def restore(self) -> None:
        """Re-attach the jobs a previous watcher submitted (in their order), instead of submitting them again."""
        warning = self.state.load()
        if warning:
            self.reporter.line(warning)
        for name, entry in self.state.items():
            self.order = max(self.order, int(entry.get("order", 0)))
            try:
                info = (self.in_dir / name).stat()
            except FileNotFoundError:
                self.state.drop(name)  # it was moved to done/ or failed/ just before the last watcher stopped
                continue
            if [info.st_size, info.st_mtime_ns] != [entry.get("size"), entry.get("mtime_ns")]:
                self.state.drop(name)
                self.reporter.line(f"{name} changed since it was submitted: it is edited again")
                continue
            job_id = entry.get("job_id") or self.find_submitted(name, entry)
            if not job_id:
                self.state.drop(name)  # the daemon never accepted it: it is submitted like a new file
                continue
            if not entry.get("job_id"):
                self.state.put(name, {**entry, "job_id": job_id})
            with self.lock:
                self.in_flight.add(name)
            self.jobs.put((name, job_id))
            self.reporter.line(f"{name}: re-attached to job {job_id}")

    def find_submitted(self, name: str, entry: dict[str, Any]) -> str | None:
        """The job of a file whose watcher died between submitting and recording the job id, if the daemon has one."""
        since = entry.get("submitting")
        if not isinstance(since, int | float):
            return None
        source = str((self.in_dir / name).resolve())
        assert self.client is not None
        for job in self.client.jobs(limit=500):  # newest first
            if job.source == source and job.submitted_unix >= since - 1.0:
                return job.job_id
        return None

    # -- scanning --------------------------------------------------------------------------------------------

    def scan(self) -> None:
        now = time.monotonic()
        try:
            listed = os.listdir(self.in_dir)
        except OSError as exc:
            raise V2vzError(f"cannot list {self.in_dir} ({exc.strerror or type(exc).__name__})") from None
        names = sorted(name for name in listed if self.is_clip(name, listed))
        with self.lock:
            busy = set(self.in_flight)
        for name in set(self.seen) - set(names) | busy:
            self.seen.pop(name, None)
        for name in names:
            if name in busy:
                continue
            path = self.in_dir / name
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            signature = (info.st_size, info.st_mtime_ns)
            seen = self.seen.get(name)
            if seen is None or seen.signature != signature:
                self.seen[name] = Seen(signature, now)
                continue
            if seen.complete_at is None:
                if now - seen.since < self.settle or not readable(path):
                    continue
                seen.complete_at = now
        ready = sorted((seen.complete_at, name) for name, seen in self.seen.items() if seen.complete_at is not None)
        for _, name in ready:
            if self.stop.is_set():
                return
            self.consider(name, now)

    def is_clip(self, name: str, listed: list[str]) -> bool:
        """A video to edit: not a matte (NAME.matte.mp4, or a file a sidecar or v2vz.toml names as its matte)."""
        return is_video(name) and not is_matte_name(name) and name not in self.mattes.named(listed)

    def settings_settled(self, path: Path, now: float) -> bool:
        try:
            info = path.stat()
        except FileNotFoundError:
            self.settings_seen.pop(path, None)
            return True
        signature = (info.st_size, info.st_mtime_ns)
        seen = self.settings_seen.get(path)
        if seen is None or seen[0] != signature:
            self.settings_seen[path] = (signature, now)
            return False
        return now - seen[1] >= self.settle

    def consider(self, name: str, now: float) -> None:
        """A complete video: wait for a prompt, fail on bad settings, or submit it."""
        seen = self.seen[name]
        video = self.in_dir / name
        if seen.signature[0] == 0:
            message = f"{name} waits: it is empty"
        else:
            settled = [self.settings_settled(p, now) for p in (self.in_dir / DEFAULTS_NAME, video.with_suffix(".toml"))]
            if not all(settled):
                seen.waiting = None
                return
            try:
                result = resolve_job(video, self.out_dir, self.state.outputs())
            except V2vzError as exc:
                self.seen.pop(name, None)
                self.fail_file(name, str(exc))
                return
            matte = result.matte if isinstance(result, EditJob) else None
            if matte is not None and not self.settings_settled(matte, now):
                seen.waiting = None  # the matte is still being copied in: it settles like the sidecar
                return
            if isinstance(result, EditJob):
                self.submit(name, result, seen.signature)
                return
            message = result
        if seen.waiting != message:
            self.reporter.line(message)
        seen.waiting = message

    def submit(self, name: str, job: EditJob, signature: tuple[int, int]) -> None:
        assert self.client is not None
        self.order += 1
        entry = {"job_id": None, "size": signature[0], "mtime_ns": signature[1], "out": str(job.output)}
        entry["order"] = self.order
        submitting = {**entry, "submitting": time.time()}
        self.state.put(name, submitting)
        self.seen.pop(name, None)
        try:
            reply = self.submit_when_reachable(name, job, submitting)
        except MediaNotFound as exc:
            self.state.drop(name)
            if (self.in_dir / name).exists():
                self.fail_file(name, str(exc))
            return
        except (InvalidArgument, MediaError) as exc:
            self.state.drop(name)
            self.fail_file(name, str(exc))
            return
        if reply is None:
            return  # stopped while the daemon was away: the next watcher finds out whether it took the job
        job_id, ahead = reply
        self.state.put(name, {**entry, "job_id": job_id})
        with self.lock:
            self.in_flight.add(name)
        position = f", {ahead} job(s) ahead of it" if ahead else ""
        self.reporter.line(f"{name}: submitted as job {job_id}{position}")
        self.jobs.put((name, job_id))

    def submit_when_reachable(self, name: str, job: EditJob, entry: dict[str, Any]) -> tuple[str, int] | None:
        """Submit, waiting for the daemon as long as it is away; (job id, jobs ahead), or None when stopped first.

        A submit cut off by a daemon that went away may still have been accepted: once the daemon is back, its job
        list says whether it was (find_submitted), so a clip is never submitted twice.
        """
        from v2vz.client import Client

        while True:
            try:
                if self.client is None:
                    self.client = Client()  # the endpoint file as it is now: a restarted daemon has a new token
                reply = self.client.submit(job, client="v2vz-watch")
                return reply.job_id, reply.queue_position
            except DaemonUnavailable as exc:
                if not self.wait_for_daemon(exc):
                    return None
                self.client = close_quietly(self.client)
                try:
                    self.client = Client()
                    accepted = self.find_submitted(name, entry)
                except DaemonUnavailable:
                    continue
                if accepted:
                    return accepted, 0

    # -- the daemon away -------------------------------------------------------------------------------------

    def wait_for_daemon(self, error: V2vzError) -> bool:
        """Wait (saying so once) until the daemon answers again; False when the watcher is stopped first.

        `v2vz watch` runs until Ctrl-C or SIGTERM: a daemon that restarts or is away for a while only delays the
        clips, which wait in IN_DIR (and their jobs in the daemon's journal) meanwhile.
        """
        delay = 0.1
        while not self.stop.is_set():
            if self.daemon_answers():
                with self.daemon_lock:
                    if self.daemon_away:
                        self.daemon_away = False
                        self.reporter.line("the daemon is back: going on")
                return True
            with self.daemon_lock:
                if not self.daemon_away:
                    self.daemon_away = True
                    why = "it went away while a job ran" if isinstance(error, JobLost) else one_line(str(error), 300)
                    self.reporter.line(f"waiting for the daemon ({why}); clips wait in {self.in_dir} meanwhile")
            self.stop.wait(delay)
            delay = min(delay * 2, 2.0)
        return False

    @staticmethod
    def daemon_answers() -> bool:
        """The daemon named by the endpoint file (as it is now: a restarted daemon writes a new one) answers."""
        from v2vz.client import Client

        try:
            with Client(timeout=5) as probe:
                probe.info()
        except DaemonUnavailable:
            return False
        return True

    # -- following -------------------------------------------------------------------------------------------

    def follow_all(self) -> None:
        """One job after another, in submission order: the daemon runs them in that order too."""
        while True:
            item = self.jobs.get()
            if item is None or self.stop.is_set():
                return
            name, job_id = item
            try:
                last = self.follow(name, job_id)
            except JobNotFound:
                self.state.drop(name)
                self.release(name)
                self.reporter.end(name, f"{name}: the daemon no longer knows job {job_id}; submitting it again")
                continue
            except V2vzError as exc:
                if not self.stop.is_set():
                    self.fatal = str(exc)
                    self.stop.set()
                    self.wake.set()
                return
            if self.stop.is_set() and last is None:
                return
            self.finish(name, job_id, last)

    def follow(self, name: str, job_id: str) -> pb.JobEvent | None:
        """The job's last event; while the daemon is away, wait for it and go on from the last event seen (the
        journal keeps the job). None when the watcher is stopped first."""
        from v2vz.client import Client

        last, after = None, 0
        while True:
            try:
                if self.follower_client is None:
                    self.follower_client = Client()  # the endpoint file as it is now
                # No reconnecting inside the client: a daemon that is away is said at once, by wait_for_daemon.
                for last in self.follower_client.follow(job_id, after, reconnect=False):  # noqa: B007 - the outcome
                    after = max(after, last.sequence)
                    if last.WhichOneof("kind") == EventType.PROGRESS:
                        progress = last.progress
                        self.reporter.step(name, progress.stage, progress.step, progress.total)
                return last
            except DaemonUnavailable as exc:  # JobLost too: the stream broke off before the job ended
                if self.stop.is_set() or not self.wait_for_daemon(exc):
                    return None
                self.follower_client = close_quietly(self.follower_client)
                self.stop.wait(0.2)  # a daemon that answers but is shutting down ends streams at once: no busy loop

    def finish(self, name: str, job_id: str, last: pb.JobEvent | None) -> None:
        ended = outcome(job_id, last)
        if ended.done:
            stem = self.move_away(name, DONE_DIR)
            self.state.drop(name)
            self.release(name)
            out = last.done.output or str(self.out_dir / f"{Path(name).stem}.mp4")
            moved = f" (kept as {DONE_DIR}/{stem}{Path(name).suffix})" if stem != Path(name).stem else ""
            self.reporter.end(name, f"{name} -> {out}{moved}")
            return
        hint = "; move the file back into the folder to edit it again" if ended.state == JobState.CANCELLED else ""
        self.fail_file(name, ended.message + hint)
        self.release(name)

    def release(self, name: str) -> None:
        with self.lock:
            self.in_flight.discard(name)
        self.wake.set()

    # -- moving files ----------------------------------------------------------------------------------------

    def move_away(self, name: str, folder_name: str, reason: str | None = None) -> str:
        """Move the video and its sidecar into done/ or failed/ (with NAME.error.txt); returns the stem used there."""
        folder = self.in_dir / folder_name
        folder.mkdir(exist_ok=True)
        video = self.in_dir / name
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, number = stem, 1
        while any((folder / f"{candidate}{end}").exists() for end in (suffix, ".toml", ".error.txt")):
            number += 1
            candidate = f"{stem}-{number}"
        if reason is not None:
            write_atomic(folder / f"{candidate}.error.txt", (one_line(reason) or "no reason given") + "\n")
        with contextlib.suppress(FileNotFoundError):
            os.replace(video, folder / f"{candidate}{suffix}")
        sidecar = video.with_suffix(".toml")
        matte = self.mattes.matte_of(sidecar.name)
        with contextlib.suppress(FileNotFoundError):
            if self.shares_sidecar(name):  # a.mov still needs the a.toml it shares with a.mp4: copy, do not move
                shutil.copy2(sidecar, folder / f"{candidate}.toml")
            else:
                os.replace(sidecar, folder / f"{candidate}.toml")
        self.move_matte(matte, folder)
        return candidate

    def move_matte(self, matte: Path | None, folder: Path) -> None:
        """A matte video in IN_DIR goes with its clip once no sidecar left there names it (it would else be taken
        for a clip); one that v2vz.toml or another clip's sidecar names stays, and so do images and folders."""
        if matte is None or matte.parent != self.in_dir or not is_video(matte.name) or not matte.is_file():
            return
        try:
            listed = os.listdir(self.in_dir)
        except OSError:
            return
        if matte.name in self.mattes.named(listed):
            return
        target, number = folder / matte.name, 1
        while os.path.lexists(target):
            number += 1
            target = folder / f"{matte.stem}-{number}{matte.suffix}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(matte, target)

    def shares_sidecar(self, name: str) -> bool:
        """Another video with the same stem is still in IN_DIR (NAME.toml serves both)."""
        stem = Path(name).stem
        try:
            others = [other for other in os.listdir(self.in_dir) if other != name and is_video(other)]
        except OSError:
            return False
        return any(Path(other).stem == stem for other in others)

    def fail_file(self, name: str, reason: str) -> None:
        self.move_away(name, FAILED_DIR, reason)
        self.state.drop(name)
        self.reporter.end(name, f"{name} failed: {one_line(reason) or 'no reason given'}")


def close_quietly(client: Client | None) -> None:
    """Close a client that may be gone or broken already; returns None, what the caller's attribute becomes."""
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
