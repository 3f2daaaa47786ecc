"""The v2vz daemon: one long-lived process that loads the model once and runs edits one at a time over gRPC.

This module wires the parts together and implements the v2vz.v1 Editor service:

- security.py: the address, the private socket folder, the token interceptor;
- model_slot.py: the model, loaded on a thread of its own; health is SERVING once it is ready;
- journal.py: every job and event in SQLite before a call returns, so a restart never loses one;
- worker.py: one worker thread runs jobs in submission order (one per model worker with a cluster);
- cluster/: with --workers or --ray, the model workers are Ray actors (imported only then);
- event_hub.py: events from the journal to every WatchJob stream (and again after a reconnect);
- inversion_cache.py: re-prompts of a clip reuse its inversion from disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import logging.handlers
import os
import re
import secrets
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from v2vz import __version__
from v2vz.api.endpoint import (
    DAEMON_LOG_NAME,
    STATE_FOLDER,
    Endpoint,
    endpoint_path,
    remove_endpoint_if_mine,
    write_endpoint,
)
from v2vz.api.errors import (
    ERROR_METADATA_KEY,
    Busy,
    InvalidArgument,
    MediaNotFound,
    ModelUnavailable,
    OutputExists,
    PathNotAllowed,
    V2vzError,
    status_of,
)
from v2vz.api.events import FINISHED_STATES, TERMINAL_TYPES, WATCHING_METADATA_KEY, JobState
from v2vz.api.files import temporary_beside
from v2vz.api.formats import frame_pattern
from v2vz.api.job import MAX_PATH_CHARS, MAX_PROMPT_CHARS
from v2vz.api.takes import sidecar_path
from v2vz.api.text import printable
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.v1 import editor_pb2_grpc
from v2vz.api.wire import changed_options, job_from_request
from v2vz_daemon import security
from v2vz_daemon.event_hub import EventHub, to_wire
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_daemon.journal import Journal
from v2vz_daemon.model_slot import ModelSlot, PipelineFactory, import_engine, memory
from v2vz_daemon.worker import Worker

if TYPE_CHECKING:
    from v2vz_daemon.cluster.connect import ClusterConfig
    from v2vz_daemon.cluster.service import Cluster

log = logging.getLogger("v2vz.daemon")

# 2: window / windows; 3: ListJobs pages; 4: status, notes, job details; 5: formats, takes, previews; 6: workers, retry
PROTOCOL_VERSION = 6
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Editor"].full_name
MAX_SEND = 64 * 1024 * 1024
MAX_RECEIVE = 8 * 1024 * 1024  # requests are small; uploads come in 1 MiB chunks
MAX_PAGE = 200  # jobs per ListJobs reply
MAX_SEQUENCE = 2**63 - 1  # the journal's integers
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,12}")  # an upload keeps its extension (FFmpeg reads it) if it is one


@dataclass
class DaemonConfig:
    model: str
    cache_dir: Path
    device: str = "auto"
    listen: str | None = None  # None: a Unix socket beside the endpoint file (POSIX), else 127.0.0.1:0
    allow_remote: bool = False
    endpoint_file: Path = field(default_factory=endpoint_path)
    cache_max_bytes: int = 4 * 1024**3
    max_attempts: int = 3  # a job interrupted by this many daemon deaths is failed instead of re-queued
    workers: int = 32  # gRPC threads; an event stream holds one while it is open
    max_streams: int = 24  # open WatchJob streams at most: the other threads always answer unary calls and health
    media_roots: tuple[Path, ...] = ()  # with allow_remote: the only folders remote clients may name
    allowed_models: tuple[str, ...] = ()  # what remote clients may name besides the default model
    state_root: Path | None = None  # journal, inversions, uploads and log; None: the cache folder's `daemon`
    cluster: ClusterConfig | None = None  # None: the one in-process worker; else Ray workers (v2vz_daemon.cluster)

    @property
    def state_dir(self) -> Path:
        return self.state_root or self.cache_dir / STATE_FOLDER


class Daemon:
    """The server and its parts: model slot, journal, event hub, inversion cache and worker."""

    def __init__(
        self,
        config: DaemonConfig,
        pipeline_factory: PipelineFactory | None = None,
        state_lock: security.StateLock | None = None,
    ) -> None:
        """state_lock: the state folder's lock when the caller took it already (`v2vz serve`, before the model)."""
        self.config = config
        self.state_lock = state_lock or security.StateLock(config.state_dir)
        self.token = secrets.token_hex(32)
        self.health = health.HealthServicer()
        self.slot = ModelSlot(config.model, config.device, config.cache_dir, pipeline_factory)
        for folder in (config.state_dir, config.state_dir / "inversions", config.state_dir / "uploads"):
            security.own_private_folder(folder)  # prompts, paths and the clips' inversions: this user's only
        self.journal = Journal(config.state_dir / "journal.sqlite", on_writable=self._journal_writable)
        self.cache = InversionCache(config.state_dir / "inversions", config.cache_max_bytes)
        self.uploads = config.state_dir / "uploads"
        self.hub = EventHub(self.journal)
        self.stopping = threading.Event()
        self.cancel_flags: set[str] = set()  # running jobs asked to stop, shared by every worker thread
        self.cluster: Cluster | None = None
        if config.cluster is not None:
            from v2vz_daemon.cluster.service import Cluster

            self.cluster = Cluster(
                config.cluster, config.model, config.cache_dir, self.cache.folder, config.cache_max_bytes
            )
        self.workers = [self._new_worker()]  # with a cluster: one per model worker, once start() knows how many
        self.server: grpc.Server | None = None
        self.address = ""
        self.threads: list[threading.Thread] = []
        self.versions: dict[str, str] = {}
        self.streams = threading.BoundedSemaphore(config.max_streams)
        self.log_file = config.state_dir / DAEMON_LOG_NAME  # a line per job transition; 5 MiB x 4 files
        self._log_handler: logging.Handler | None = None

    @property
    def pipeline(self):
        """The loaded pipeline (None while it loads)."""
        return self.slot.pipeline

    @property
    def worker(self) -> Worker:
        """The first worker thread: cancels go through it (the flags are shared by all of them)."""
        return self.workers[0]

    @property
    def ready(self) -> threading.Event:
        return self.cluster.ready if self.cluster is not None else self.slot.ready

    @property
    def load_error(self) -> str | None:
        """Why jobs can never run: the model (or the cluster's workers) could not be loaded."""
        return self.cluster.error if self.cluster is not None else self.slot.error

    def _new_worker(self) -> Worker:
        return Worker(
            self.journal, self.hub, self.slot, self.cache, self.stopping, self.cancel_flags, cluster=self.cluster
        )

    # ----------------------------------------------------------------------------------------------------------
    # Life cycle

    def start(self) -> str:
        """Bind, start serving (NOT_SERVING until the model is loaded), write the endpoint file; returns the address.

        The state folder's lock comes first: a second daemon on this folder must touch nothing of the first one's.
        """
        self.state_lock.acquire()
        try:
            return self._start()
        except BaseException:
            self.state_lock.release()  # a daemon that did not start holds nothing
            raise

    def _start(self) -> str:
        security.refuse_second_daemon(self.config.endpoint_file)
        self._log_handler = open_log(self.log_file)
        self.versions = import_engine()
        if self.cluster is not None:  # ray.init on the main thread; a bad address or token fails here, at once
            count = self.cluster.start()
            self.workers += [self._new_worker() for _ in range(count - 1)]
            self.versions["ray"] = self.cluster.ray.__version__
        for record in self.journal.running():
            sweep_temporaries(record.job)  # what the interrupted attempt was writing when the daemon died
        sweep_temporaries_in(self.uploads, ".upload.")
        requeued = self.journal.recover(self.config.max_attempts)
        if requeued:
            log.info("re-queued %d job(s) interrupted by the last shutdown: %s", len(requeued), ", ".join(requeued))
        address = security.resolve_listen(self.config.listen, self.config.endpoint_file, self.config.allow_remote)
        security.prepare_socket(address)
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="v2vz-rpc"),
            interceptors=[security.TokenInterceptor(self.token)],
            options=[("grpc.max_receive_message_length", MAX_RECEIVE), ("grpc.max_send_message_length", MAX_SEND)],
        )
        editor_pb2_grpc.add_EditorServicer_to_server(EditorServicer(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        port = self.server.add_insecure_port(address)
        if not address.startswith("unix:"):
            address = f"{address.rsplit(':', 1)[0]}:{port}"
        self.address = address
        self.server.start()
        self.state_lock.record(address)
        security.private_folder(self.config.endpoint_file.parent)
        endpoint = Endpoint(address, self.token, os.getpid(), __version__, str(self.log_file))
        write_endpoint(self.config.endpoint_file, endpoint)
        targets = [(self._load, "v2vz-loader")] + [
            (worker.run, f"v2vz-worker-{n + 1}" if n else "v2vz-worker") for n, worker in enumerate(self.workers)
        ]
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        log.info("listening on %s (endpoint file %s)", self.address, self.config.endpoint_file)
        return address

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.ready.wait(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving; a running job stays 'running' in the journal and is re-queued by the next start."""
        self.stopping.set()
        self.hub.notify()
        if self.server:
            self.server.stop(grace).wait()
        for thread in self.threads:
            if thread.name.startswith("v2vz-worker"):  # the loader may be stuck in a slow load: a daemon thread
                thread.join(timeout=grace + 30)
        if self.cluster is not None:
            self.cluster.stop()
        remove_endpoint_if_mine(self.config.endpoint_file, self.token)
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        self.state_lock.release()  # last: the next daemon finds everything of this one settled

    def _load(self) -> None:
        if self.cluster.load() if self.cluster is not None else self.slot.load():
            self._update_health()
            self.hub.notify()

    def _journal_writable(self, writable: bool) -> None:
        if writable:
            log.info("the journal can be written again")
        else:
            log.warning("the journal cannot be written (the disk is full): NOT_SERVING until it can")
        self._update_health()

    def _update_health(self) -> None:
        """SERVING while jobs can run and be recorded: the model is ready and the journal can be written."""
        serving = self.ready.is_set() and self.journal.writable
        self._set_health(
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )

    def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)


def _abort(context: grpc.ServicerContext, error: V2vzError) -> None:
    """Refuse the call with the error's status and its class name in the trailing metadata (errors.py)."""
    context.set_trailing_metadata(((ERROR_METADATA_KEY, type(error).__name__),))
    context.abort(getattr(grpc.StatusCode, status_of(error)), str(error))


class EditorServicer(editor_pb2_grpc.EditorServicer):
    """The v2vz.v1.Editor service: validates requests synchronously, then hands jobs to the journal."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def GetInfo(self, request, context) -> pb.DaemonInfo:
        daemon, slot, cluster = self.daemon, self.daemon.slot, self.daemon.cluster
        device = slot.device if cluster is None else cluster.describe()
        info = pb.DaemonInfo(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            model=slot.model,
            default_model=daemon.config.model,
            allowed_models=list(daemon.config.allowed_models),
            device=device if daemon.load_error is None else f"failed: {daemon.load_error}",
            dtype=slot.dtype if cluster is None else next((w.dtype for w in cluster.workers() if w.dtype), ""),
            ready=daemon.ready.is_set() if cluster is not None else slot.pipeline is not None,
            queued_jobs=daemon.journal.count(JobState.QUEUED),
            journal_writable=daemon.journal.writable,
            address=daemon.address,
        )
        running = [worker.running for worker in daemon.workers if worker.running is not None]
        if running:
            info.running_job, info.running_stage = running[0]
        if cluster is not None:
            for worker in cluster.workers():
                info.workers.append(
                    pb.WorkerInfo(
                        name=worker.name,
                        node=worker.node,
                        device=worker.device,
                        pid=worker.pid,
                        state=worker.state,
                        job_id=worker.job_id,
                        window=worker.window,
                        stage=worker.stage,
                    )
                )
        info.versions.update(daemon.versions)
        info.memory_total_bytes, info.memory_allocated_bytes = memory()
        return info

    def UploadMedia(self, request_iterator, context) -> pb.UploadedMedia:
        uploads = self.daemon.uploads
        uploads.mkdir(parents=True, exist_ok=True)
        digest, size, name = hashlib.sha256(), 0, ""
        temp = temporary_beside(uploads / "upload")  # named by its digest once complete
        try:
            with open(temp, "wb") as handle:
                for chunk in request_iterator:
                    name = name or Path(chunk.filename).name
                    digest.update(chunk.data)
                    size += len(chunk.data)
                    handle.write(chunk.data)
            if size == 0:
                _abort(context, InvalidArgument("the upload was empty: send the media's bytes"))
            sha = digest.hexdigest()
            suffix = Path(name).suffix.lower()
            media_id = sha[:24] + (suffix if _SUFFIX.fullmatch(suffix) else "")
            os.replace(temp, uploads / media_id)
        finally:
            temp.unlink(missing_ok=True)
        return pb.UploadedMedia(media_id=media_id, size_bytes=size, sha256=sha)

    def SubmitEdit(self, request, context) -> pb.SubmitEditReply:
        from v2vz_engine import media
        from v2vz_engine.media.outputs import refuse_existing

        daemon = self.daemon
        try:
            source = None
            if request.WhichOneof("source") == "media_id":
                source = daemon.uploads / Path(request.media_id).name
                if not source.is_file():
                    raise MediaNotFound(f"no uploaded media {request.media_id!r}: upload it with UploadMedia first")
            elif request.source_path and not Path(request.source_path).is_absolute():
                raise InvalidArgument(
                    f"source path {request.source_path!r} must be absolute (the daemon has its own cwd)"
                )
            if not request.output and not request.out_frames_dir and request.stream_frames:
                request.out_frames_dir = str(daemon.config.state_dir / "frames" / uuid.uuid4().hex[:12])
            for name in ("output", "out_frames_dir"):
                value = getattr(request, name)
                if value and not Path(value).is_absolute():
                    raise InvalidArgument(f"{name} {value!r} must be an absolute path (the daemon has its own cwd)")
            job = job_from_request(request, daemon.config.model, source)
            if self._remote(context):
                self._confine(job, request)
                allowed = (daemon.config.model, *daemon.config.allowed_models)
                if job.model not in allowed:
                    raise PathNotAllowed(
                        f"model {job.model[:100]!r} is not one this daemon offers remote clients: {', '.join(allowed)}"
                    )
            from v2vz_engine.model_source import locate

            locate(job.model)  # a model that is nowhere fails now, in milliseconds, not when the job starts
            job, _ = media.resolve(job)  # the real frame count, and outputs that never touch the source
            refuse_existing(job)  # takes never overwrite (unless the job says so) ...
            self._refuse_shared_outputs(job)  # ... and two jobs in flight never write one file
        except V2vzError as exc:
            _abort(context, exc)
        try:
            record = daemon.journal.submit(job, client=request.client, stream_frames=request.stream_frames)
            ahead = max(0, daemon.journal.queue_position(record.job_id) - 1)
        except V2vzError as exc:  # a full disk: nothing was recorded
            _abort(context, exc)
        daemon.hub.notify()
        log.info(
            "job %s submitted by %s: frames %d..%d of %s, %r -> %r",
            record.job_id,
            request.client or "a client",
            job.start,
            job.start + job.frames - 1,
            job.source,
            job.source_prompt,
            job.prompt,
        )
        from v2vz_engine.prompt_length import prompt_note

        notes = [note for note in (prompt_note(name, text) for name, text in _prompts(job)) if note]
        return pb.SubmitEditReply(job_id=record.job_id, queue_position=ahead, notes=notes)

    def _refuse_shared_outputs(self, job) -> None:
        """OutputExists when a queued or running job writes one of this job's files."""
        from v2vz_engine.media.outputs import output_files

        mine = {os.path.realpath(path): path for path in output_files(job)}
        for other in self.daemon.journal.unfinished():
            for path in output_files(other.job):
                if os.path.realpath(path) in mine:
                    raise OutputExists(
                        f"job {other.job_id} ({other.state}) writes {path} already: give this edit another --out, "
                        "or leave --out out for a take of its own"
                    )

    def _remote(self, context: grpc.ServicerContext) -> bool:
        """A call that did not come through the Unix socket, to a daemon that listens beyond loopback."""
        return self.daemon.config.allow_remote and not context.peer().startswith("unix:")

    def _confine(self, job, request: pb.SubmitEditRequest) -> None:
        """Remote clients name only paths inside --media-root (uploads and streamed frames are the daemon's own)."""
        roots = self.daemon.config.media_roots
        if request.WhichOneof("source") != "media_id":
            security.confine(str(job.source), roots, "source")
        own = (self.daemon.config.state_dir / "frames",)
        if job.output is not None:
            security.confine(str(job.output), roots, "output")
        if job.out_frames_dir is not None:
            security.confine(str(job.out_frames_dir), own if request.stream_frames else roots, "frames folder")

    def WatchJob(self, request, context) -> Iterator[pb.JobEvent]:
        daemon, hub = self.daemon, self.daemon.hub
        try:
            job_id = daemon.journal.resolve(request.job_id)
        except V2vzError as exc:
            _abort(context, exc)
        record = daemon.journal.get(job_id)
        if not daemon.streams.acquire(blocking=False):
            _abort(
                context,
                Busy(
                    f"the daemon already streams the events of {daemon.config.max_streams} jobs: close a "
                    "`v2vz attach` or a plugin's job, or try again in a moment"
                ),
            )
        try:
            context.send_initial_metadata(((WATCHING_METADATA_KEY, job_id),))  # attached: at once, before any event
            if request.cancel_on_disconnect:
                context.add_callback(lambda: _cancel_if_unfinished(daemon, job_id))
            last = min(request.after_sequence, MAX_SEQUENCE)
            final = hub.final_event(job_id)
            if final is not None and final.sequence <= last:
                yield from to_wire(final, record.stream_frames)  # attached past the end: say how it ended, and stop
                return
            while True:
                seen = hub.version
                for event in daemon.journal.events_after(job_id, last):
                    yield from to_wire(event, record.stream_frames)
                    last = event.sequence
                    if event.kind in TERMINAL_TYPES:
                        return
                hub.record_position(job_id)  # the jobs ahead changed: a new "queued" event, read on the next turn
                if not context.is_active() or daemon.stopping.is_set():
                    return
                hub.wait_for_change(seen, timeout=1.0)
        finally:
            daemon.streams.release()

    def CancelJob(self, request, context) -> pb.CancelJobReply:
        journal = self.daemon.journal
        try:
            job_id = journal.resolve(request.job_id)
            had_ended = journal.get(job_id).state in FINISHED_STATES
            state = self.daemon.worker.request_cancel(job_id)
        except V2vzError as exc:  # no such job, an ambiguous prefix, a full disk
            _abort(context, exc)
        if state == JobState.CANCELLED and journal.get(job_id).started is None:
            log.info("job %s cancelled while queued", job_id)
        elif state == JobState.RUNNING:
            log.info("job %s: cancel asked for; it stops at its next step", job_id)
        return pb.CancelJobReply(state=state, job_id=job_id, had_ended=had_ended)

    def ListJobs(self, request, context) -> pb.ListJobsReply:
        journal = self.daemon.journal
        limit = min(request.limit or 50, MAX_PAGE)
        before = request.page_token or None
        if before is not None and journal.get(before) is None:
            _abort(context, InvalidArgument(f"page_token {before[:40]!r} names no job: ask again without it"))
        records = journal.list(limit + 1, before)
        reply = pb.ListJobsReply(next_page_token=records[limit - 1].job_id if len(records) > limit else "")
        for record in records[:limit]:
            reply.jobs.append(
                pb.JobSummary(
                    job_id=record.job_id,
                    state=record.state,
                    source=str(record.job.source)[:MAX_PATH_CHARS],
                    prompt=record.job.prompt[:MAX_PROMPT_CHARS],  # journals of older daemons have no limit
                    start=record.job.start,
                    frames=record.job.frames,
                    submitted_unix=record.submitted,
                    finished_unix=record.finished or 0.0,
                    reason=record.reason,
                    attempts=record.attempts,
                    started_unix=record.started or 0.0,
                    output=str(record.job.output or ""),
                    out_frames_dir=str(record.job.out_frames_dir or ""),
                    model=record.job.model,
                    options=changed_options(record.job.options),
                    client=record.client,
                    take=record.job.take or 0,
                    preview=record.job.preview,
                    source_prompt=record.job.source_prompt[:MAX_PROMPT_CHARS],
                    codec=record.job.codec or "",
                    no_audio=not record.job.audio,
                )
            )
        return reply


def _prompts(job) -> list[tuple[str, str]]:
    return [("prompt", job.prompt), ("source prompt", job.source_prompt)]


def sweep_temporaries(job) -> None:
    """Remove the hidden partial files (`.NAME.*.part.*`) a killed attempt of `job` left beside its outputs."""
    if job.output is not None:
        output = Path(job.output)
        if frame_pattern(output) is None:
            sweep_temporaries_in(output.parent, f".{output.name}.")
        else:  # `.shot_0012.exr.xxxx.part.exr`: every frame file's temporary starts with the pattern's text before %d
            sweep_temporaries_in(output.parent, "." + output.name[: frame_pattern(output).start()])
        sweep_temporaries_in(output.parent, f".{sidecar_path(output).name}.")
    if job.out_frames_dir is not None:
        sweep_temporaries_in(Path(job.out_frames_dir), ".frame_")


def sweep_temporaries_in(folder: Path, prefix: str) -> None:
    """Remove `prefix*.part.*` and `prefix*.tmp` files in `folder`: temporaries of writes that never finished."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and (".part." in name or name.endswith(".tmp")):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                log.info("removed %s, left by an interrupted job", folder / name)


def _cancel_if_unfinished(daemon: Daemon, job_id: str) -> None:
    record = daemon.journal.get(job_id)
    if record is not None and record.state in (JobState.QUEUED, JobState.RUNNING):
        log.info("watcher of %s went away with cancel_on_disconnect: cancelling", job_id)
        daemon.worker.request_cancel(job_id)


LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
class OneLineFormatter(logging.Formatter):
    """A log record's message on one line whatever it quotes: a source path, a prompt or a client's name with a
    newline or a terminal escape in it can neither split a line of daemon.log nor forge one. (A traceback, which
    only an unexpected error logs, still follows on lines of its own.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))


def open_log(path: Path) -> logging.Handler:
    """The daemon's rotating log file (private, like the rest of the state folder), attached to its logger."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5 * 1024**2, backupCount=3, encoding="utf-8")
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def serve_forever(config: DaemonConfig, state_lock: security.StateLock | None = None) -> None:
    """`v2vz serve`: run until SIGINT/SIGTERM, logging to stderr (state_lock: the state folder's, already taken)."""
    import signal

    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(OneLineFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[console])
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    daemon = Daemon(config, state_lock=state_lock)
    try:
        daemon.start()
    except V2vzError:
        if daemon.cluster is not None:
            daemon.cluster.stop()
        remove_endpoint_if_mine(config.endpoint_file, daemon.token)
        daemon.state_lock.release()
        raise
    while not stop.wait(0.5):
        if daemon.load_error:
            break
    daemon.stop()
    if daemon.load_error:
        raise ModelUnavailable(daemon.load_error)
    if any(thread.is_alive() for thread in daemon.threads):
        # The model was still loading (inside torch's C++ code): interpreter finalisation would abort the process.
        # Everything durable is already in the journal and the endpoint file is gone, so leave at once.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
