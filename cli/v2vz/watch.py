"""`v2vz watch`: a folder people drop clips into, edits collected from another, every file edited exactly once.

Torch-free: the standard library, watchdog, rich and our client. A job is a video file plus an optional sidecar
`NAME.toml` beside it; `v2vz.toml` in the folder gives defaults for every file. A file is picked up once its size and
modification time have not changed for `--settle` seconds and it can be opened. The jobs go to the daemon, which
writes `OUT/NAME.mp4` under a temporary name and renames it when complete. `IN/.v2vz-watch.json` remembers the daemon's
job of each submitted file, so that a watcher that is restarted (or killed) re-attaches instead of submitting again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from v2vz.errors import DaemonUnavailable, InvalidArgument, JobNotFound, MediaError, MediaNotFound, V2vzError
from v2vz.job import EditJob, EditOptions

if TYPE_CHECKING:
    from v2vz.client import Client
    from v2vz.v1 import editor_pb2 as pb

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf"})
DEFAULTS_NAME = "v2vz.toml"
STATE_NAME = ".v2vz-watch.json"
DONE_DIR, FAILED_DIR = "done", "failed"
JOB_KEYS = ("prompt", "source_prompt", "start", "frames", "preset")
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(EditOptions))
TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")
IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})  # our own reads must not wake the loop


def is_video(name: str) -> bool:
    """A name the watcher edits: a video extension, not hidden, not a temporary file of a copy in progress."""
    lowered = name.lower()
    if name.startswith((".", "~")) or lowered.endswith(TEMP_SUFFIXES):
        return False
    return Path(lowered).suffix in VIDEO_SUFFIXES


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip() or "no reason given"


def write_atomic(path: Path, text: str) -> None:
    """Write a file under a hidden temporary name beside it, then rename it: readers never see half of it."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def readable(path: Path) -> bool:
    """The file can be opened for reading (a copier on Windows, for one, holds it locked until it is done)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Settings: v2vz.toml overlaid by NAME.toml


def read_toml(path: Path) -> dict[str, Any] | None:
    """The table of a TOML file; None when there is no such file; InvalidArgument when it is not valid TOML."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path.name} ({exc.strerror or type(exc).__name__})") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"{path.name} is not valid TOML ({one_line(str(exc))}): fix it") from None


def check_settings(file_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Typed values of one settings file, or InvalidArgument naming the file, the key and what it must be."""
    from v2vz.proto_mapping import parse_option

    unknown = sorted(key for key in data if key not in JOB_KEYS and key not in OPTION_NAMES)
    if unknown:
        try:
            EditOptions().replace(**dict.fromkeys(unknown))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{file_name}: {exc}, {', '.join(JOB_KEYS)}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("prompt", "source_prompt", "preset"):
            if not isinstance(value, str):
                example = f'{key} = "..."'
                raise InvalidArgument(f"{file_name}: {key} must be a string in quotes ({example}), got {value!r}")
        elif key in ("start", "frames"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{file_name}: {key} must be a whole number, got {value!r}")
        else:
            text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
            try:
                value = parse_option(key, text)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{file_name}: {exc}") from None
        values[key] = value
    return values


def free_output(out_dir: Path, stem: str, claimed: set[str]) -> Path:
    """OUT/STEM.mp4, or STEM-2.mp4, STEM-3.mp4, ... when that name holds an earlier edit or belongs to a job still in
    flight (a.mp4 and a.mov, or a clip dropped again): a watch folder never overwrites work."""
    candidate, number = out_dir / f"{stem}.mp4", 1
    while candidate.exists() or str(candidate.resolve()) in claimed:
        number += 1
        candidate = out_dir / f"{stem}-{number}.mp4"
    return candidate.resolve()


def resolve_job(video: Path, out_dir: Path, claimed: set[str] = frozenset()) -> EditJob | str:
    """The job of a video from its settings, or (a string) the line that says why it waits for a prompt.

    `claimed`: output paths of the jobs in flight, which the new job's output must not take.
    """
    sidecar = video.with_suffix(".toml")
    settings: dict[str, Any] = {}
    for path in (video.parent / DEFAULTS_NAME, sidecar):
        data = read_toml(path)
        if data is not None:
            settings.update(check_settings(path.name, data))
    missing = [key for key in ("prompt", "source_prompt") if not settings.get(key, "").strip()]
    if missing:
        wanted = " and ".join(f'{key} = "..."' for key in missing)
        return f"{video.name} waits: add {wanted} to {sidecar.name} or {DEFAULTS_NAME}"
    options = EditOptions.preset(
        settings.get("preset", "default"), **{k: v for k, v in settings.items() if k in OPTION_NAMES}
    )
    options.validate()
    job = EditJob(
        source=video.resolve(),
        prompt=settings["prompt"],
        source_prompt=settings["source_prompt"],
        start=settings.get("start", 0),
        frames=settings.get("frames", 8),
        options=options,
        out_mp4=free_output(out_dir, video.stem, claimed),
        model="",
    )
    job.validate()
    return job


# ---------------------------------------------------------------------------------------------------------------
# The state file: NAME -> the daemon's job, once it accepted it


class State:
    """`IN/.v2vz-watch.json`, written atomically on every change; shared by the scanning and the following thread."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}

    def load(self) -> str | None:
        """Read the file; returns a warning line when it was unreadable (then nothing is remembered)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return f"warning: ignoring the unreadable {self.path.name} ({one_line(str(exc))})"
        jobs = data.get("files") if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            return f"warning: ignoring {self.path.name}: it is not a watch state file"
        self.entries = {name: entry for name, entry in jobs.items() if isinstance(entry, dict)}
        return None

    def _save(self) -> None:
        write_atomic(self.path, json.dumps({"version": 1, "files": self.entries}, indent=2) + "\n")

    def put(self, name: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.entries[name] = entry
            self._save()

    def outputs(self) -> set[str]:
        """The output paths of every job in flight."""
        with self.lock:
            return {str(entry["out"]) for entry in self.entries.values() if entry.get("out")}

    def drop(self, name: str) -> None:
        with self.lock:
            if self.entries.pop(name, None) is not None:
                self._save()

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return sorted(self.entries.items(), key=lambda item: (item[1].get("order", 0), item[0]))


# ---------------------------------------------------------------------------------------------------------------
# Progress: a rich bar per file on a terminal, plain lines otherwise


class Reporter:
    def __init__(self, console: Console):
        self.console = console
        self.lock = threading.RLock()
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not self.live,
        )
        self.tasks: dict[str, Any] = {}
        self.last: dict[str, tuple[str, float]] = {}

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def line(self, text: str) -> None:
        with self.lock:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def step(self, name: str, stage: str, step: int, total: int) -> None:
        with self.lock:
            if self.live:
                description = f"{name}: {stage}"
                if name not in self.tasks:
                    self.tasks[name] = self.progress.add_task(description, total=total or None)
                self.progress.update(self.tasks[name], description=description, total=total or None, completed=step)
                return
            now = time.monotonic()
            previous = self.last.get(name)
            if previous is None or previous[0] != stage or step >= total or now - previous[1] >= 1.0:
                self.last[name] = (stage, now)
                self.line(f"{name}: {stage} {step}/{total}" if total else f"{name}: {stage}")

    def end(self, name: str, text: str) -> None:
        with self.lock:
            task = self.tasks.pop(name, None)
            if task is not None:
                self.progress.remove_task(task)
            self.last.pop(name, None)
            self.line(text)


# ---------------------------------------------------------------------------------------------------------------
# The watcher


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
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()
        self.jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.fatal: str | None = None
        self.order = 0
        self.client: Client | None = None
        self.follower_client: Client | None = None

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
            with contextlib.suppress(Exception):
                self.follower_client.close()
            follower.join(2.0)
            with contextlib.suppress(Exception):
                observer.join(2.0)
            self.client.close()
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
            names = sorted(name for name in os.listdir(self.in_dir) if is_video(name))
        except OSError as exc:
            raise V2vzError(f"cannot list {self.in_dir} ({exc.strerror or type(exc).__name__})") from None
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
        entry = {"job_id": None, "size": signature[0], "mtime_ns": signature[1], "out": str(job.out_mp4)}
        entry["order"] = self.order
        self.state.put(name, {**entry, "submitting": time.time()})
        self.seen.pop(name, None)
        try:
            reply = self.client.submit(job, client="v2vz-watch")
        except MediaNotFound as exc:
            self.state.drop(name)
            if (self.in_dir / name).exists():
                self.fail_file(name, str(exc))
            return
        except (InvalidArgument, MediaError) as exc:
            self.state.drop(name)
            self.fail_file(name, str(exc))
            return
        self.state.put(name, {**entry, "job_id": reply.job_id})
        with self.lock:
            self.in_flight.add(name)
        position = f", queue position {reply.queue_position}" if reply.queue_position else ""
        self.reporter.line(f"{name}: submitted as job {reply.job_id}{position}")
        self.jobs.put((name, reply.job_id))

    # -- following -------------------------------------------------------------------------------------------

    def follow_all(self) -> None:
        """One job after another, in submission order: the daemon runs them in that order too."""
        assert self.follower_client is not None
        while True:
            item = self.jobs.get()
            if item is None or self.stop.is_set():
                return
            name, job_id = item
            try:
                last = self.follow(self.follower_client, name, job_id)
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

    def follow(self, client: Client, name: str, job_id: str) -> pb.JobEvent | None:
        last = None
        for last in client.watch(job_id):  # noqa: B007 - the last event is the outcome
            if last.WhichOneof("kind") == "progress":
                progress = last.progress
                stage = "inversion" if progress.stage == "cached-inversion" else progress.stage
                self.reporter.step(name, stage, progress.step, progress.total)
        return last

    def finish(self, name: str, job_id: str, last: pb.JobEvent | None) -> None:
        kind = last.WhichOneof("kind") if last is not None else None
        if kind == "done":
            stem = self.move_away(name, DONE_DIR)
            self.state.drop(name)
            self.release(name)
            out = last.done.out_mp4 or str(self.out_dir / f"{Path(name).stem}.mp4")
            moved = f" (kept as {DONE_DIR}/{stem}{Path(name).suffix})" if stem != Path(name).stem else ""
            self.reporter.end(name, f"{name} -> {out}{moved}")
            return
        if kind == "failed":
            reason = last.failed.reason or f"job {job_id} failed ({last.failed.code or 'no reason given'})"
        elif kind == "cancelled":
            detail = f": {last.cancelled.reason}" if last.cancelled.reason else ""
            reason = f"job {job_id} was cancelled{detail}; move the file back into the folder to edit it again"
        else:
            reason = f"the daemon ended the events of job {job_id} before it finished: see `v2vz attach {job_id}`"
        self.fail_file(name, reason)
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
            write_atomic(folder / f"{candidate}.error.txt", one_line(reason) + "\n")
        with contextlib.suppress(FileNotFoundError):
            os.replace(video, folder / f"{candidate}{suffix}")
        sidecar = video.with_suffix(".toml")
        with contextlib.suppress(FileNotFoundError):
            if self.shares_sidecar(name):  # a.mov still needs the a.toml it shares with a.mp4: copy, do not move
                shutil.copy2(sidecar, folder / f"{candidate}.toml")
            else:
                os.replace(sidecar, folder / f"{candidate}.toml")
        return candidate

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
        self.reporter.end(name, f"{name} failed: {one_line(reason)}")


def watch(
    in_dir: Annotated[
        Path, typer.Argument(metavar="IN_DIR", help="The folder clips (and NAME.toml sidecars) are dropped into.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the edits go, as OUT/NAME.mp4.")],
    once: Annotated[
        bool, typer.Option("--once", help="Process the files that are there, then exit (for cron and CI).")
    ] = False,
    settle: Annotated[
        float, typer.Option(help="Seconds a file's size and time must stay unchanged before it is picked up.")
    ] = 2.0,
) -> None:
    """Edit every clip dropped into IN_DIR through the daemon, exactly once, into OUT/NAME.mp4.

    NAME.toml beside a clip (and v2vz.toml in IN_DIR, for every clip) gives prompt, source_prompt, start, frames,
    preset and any edit option. Edited clips move to IN_DIR/done/, the others to IN_DIR/failed/ with NAME.error.txt.
    """
    from v2vz.main import fail

    if not in_dir.is_dir():
        raise fail(f"{in_dir} is not a folder: give the folder clips are dropped into")
    if settle < 0:
        raise fail(f"--settle must be 0 or more seconds, got {settle:g}")
    in_dir, out_dir = in_dir.resolve(), out.expanduser().resolve()
    if out_dir == in_dir:
        raise fail("--out is the watched folder itself: give another folder for the edits")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create {out_dir} ({exc.strerror or type(exc).__name__})") from None
    with Reporter(Console(stderr=True)) as reporter:
        watcher = Watcher(in_dir, out_dir, settle, once, reporter)
        previous = None
        if threading.current_thread() is threading.main_thread():

            def on_sigterm(signum: int, frame: object) -> None:
                watcher.stop.set()
                watcher.wake.set()

            previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            watcher.run()
        except V2vzError as exc:
            raise fail(str(exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
