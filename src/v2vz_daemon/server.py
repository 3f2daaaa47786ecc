"""The v2vz daemon: one long-lived process that loads the model once and runs edits one at a time over gRPC.

This module wires the parts together and implements the v2vz.v1 Editor service:

- security.py: the address, the private socket folder, the token interceptor;
- model_slot.py: the model, loaded on a thread of its own; health is SERVING once it is ready;
- journal.py: every job and event in SQLite before a call returns, so a restart never loses one;
- worker.py: one worker thread runs jobs in submission order;
- event_hub.py: events from the journal to every WatchJob stream (and again after a reconnect);
- inversion_cache.py: re-prompts of a clip reuse its inversion from disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from v2vz import __version__
from v2vz.api.endpoint import Endpoint, endpoint_path, remove_endpoint_if_mine, write_endpoint
from v2vz.api.errors import (
    ERROR_METADATA_KEY,
    InvalidArgument,
    JobNotFound,
    MediaNotFound,
    ModelUnavailable,
    V2vzError,
    status_of,
)
from v2vz.api.events import TERMINAL_TYPES, JobState
from v2vz.api.files import temporary_beside
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.v1 import editor_pb2_grpc
from v2vz.api.wire import job_from_request
from v2vz_daemon import security
from v2vz_daemon.event_hub import EventHub, to_wire
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_daemon.journal import Journal
from v2vz_daemon.model_slot import ModelSlot, PipelineFactory, import_engine, memory
from v2vz_daemon.worker import Worker

log = logging.getLogger("v2vz.daemon")

PROTOCOL_VERSION = 2  # 2: Progress.window / windows
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Editor"].full_name
MAX_MESSAGE = 64 * 1024 * 1024


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
    workers: int = 16  # gRPC threads: watchers hold one each while they stream

    @property
    def state_dir(self) -> Path:
        return self.cache_dir / "daemon"


class Daemon:
    """The server and its parts: model slot, journal, event hub, inversion cache and worker."""

    def __init__(self, config: DaemonConfig, pipeline_factory: PipelineFactory | None = None) -> None:
        self.config = config
        self.token = secrets.token_hex(32)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.state_dir / "journal.sqlite")
        self.cache = InversionCache(config.state_dir / "inversions", config.cache_max_bytes)
        self.uploads = config.state_dir / "uploads"
        self.slot = ModelSlot(config.model, config.device, config.cache_dir, pipeline_factory)
        self.hub = EventHub(self.journal)
        self.stopping = threading.Event()
        self.worker = Worker(self.journal, self.hub, self.slot, self.cache, self.stopping)
        self.health = health.HealthServicer()
        self.server: grpc.Server | None = None
        self.address = ""
        self.threads: list[threading.Thread] = []
        self.versions: dict[str, str] = {}

    @property
    def pipeline(self):
        """The loaded pipeline (None while it loads)."""
        return self.slot.pipeline

    # ----------------------------------------------------------------------------------------------------------
    # Life cycle

    def start(self) -> str:
        """Bind, start serving (NOT_SERVING until the model is loaded), write the endpoint file; returns the address."""
        security.refuse_second_daemon(self.config.endpoint_file)
        self.versions = import_engine()
        requeued = self.journal.recover(self.config.max_attempts)
        if requeued:
            log.info("re-queued %d job(s) interrupted by the last shutdown: %s", len(requeued), ", ".join(requeued))
        address = security.resolve_listen(self.config.listen, self.config.endpoint_file, self.config.allow_remote)
        security.prepare_socket(address)
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="v2vz-rpc"),
            interceptors=[security.TokenInterceptor(self.token)],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
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
        security.make_private_folder(self.config.endpoint_file.parent)
        write_endpoint(self.config.endpoint_file, Endpoint(address, self.token, os.getpid(), __version__))
        for target, name in ((self._load, "v2vz-loader"), (self.worker.run, "v2vz-worker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        log.info("listening on %s (endpoint file %s)", self.address, self.config.endpoint_file)
        return address

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.slot.ready.wait(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving; a running job stays 'running' in the journal and is re-queued by the next start."""
        self.stopping.set()
        self.hub.notify()
        if self.server:
            self.server.stop(grace).wait()
        for thread in self.threads:
            if thread.name == "v2vz-worker":  # the loader may be stuck in a slow load: it is a daemon thread
                thread.join(timeout=grace + 30)
        remove_endpoint_if_mine(self.config.endpoint_file, self.token)

    def _load(self) -> None:
        if self.slot.load():
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            self.hub.notify()

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
        daemon, slot = self.daemon, self.daemon.slot
        info = pb.DaemonInfo(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            model=daemon.config.model,
            device=slot.device if slot.error is None else f"failed: {slot.error}",
            dtype=slot.dtype,
            ready=slot.pipeline is not None,
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
            media_id = f"{sha[:24]}{Path(name).suffix.lower()}"
            os.replace(temp, uploads / media_id)
        finally:
            temp.unlink(missing_ok=True)
        return pb.UploadedMedia(media_id=media_id, size_bytes=size, sha256=sha)

    def SubmitEdit(self, request, context) -> pb.SubmitEditReply:
        from v2vz_engine import media

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
            if not request.out_mp4 and not request.out_frames_dir and request.stream_frames:
                request.out_frames_dir = str(daemon.config.state_dir / "frames" / uuid.uuid4().hex[:12])
            for name in ("out_mp4", "out_frames_dir"):
                value = getattr(request, name)
                if value and not Path(value).is_absolute():
                    raise InvalidArgument(f"{name} {value!r} must be an absolute path (the daemon has its own cwd)")
            job, _ = media.resolve(job_from_request(request, daemon.config.model, source))  # the real frame count
        except V2vzError as exc:
            _abort(context, exc)
        record = daemon.journal.submit(job, client=request.client, stream_frames=request.stream_frames)
        daemon.hub.notify()
        ahead = max(0, daemon.journal.queue_position(record.job_id) - 1)
        return pb.SubmitEditReply(job_id=record.job_id, queue_position=ahead)

    def WatchJob(self, request, context) -> Iterator[pb.JobEvent]:
        daemon, hub = self.daemon, self.daemon.hub
        record = daemon.journal.get(request.job_id)
        if record is None:
            _abort(context, _no_job(request.job_id))
        if request.cancel_on_disconnect:
            context.add_callback(lambda: _cancel_if_unfinished(daemon, request.job_id))
        last = request.after_sequence
        final = hub.final_event(request.job_id)
        if final is not None and final.sequence <= last:
            yield from to_wire(final, record.stream_frames)  # attached past the end: say how it ended, and stop
            return
        while True:
            seen = hub.version
            for event in daemon.journal.events_after(request.job_id, last):
                yield from to_wire(event, record.stream_frames)
                last = event.sequence
                if event.kind in TERMINAL_TYPES:
                    return
            if not context.is_active() or daemon.stopping.is_set():
                return
            hub.wait_for_change(seen, timeout=1.0)

    def CancelJob(self, request, context) -> pb.CancelJobReply:
        try:
            state = self.daemon.worker.request_cancel(request.job_id)
        except KeyError:
            _abort(context, _no_job(request.job_id))
        return pb.CancelJobReply(state=state)

    def ListJobs(self, request, context) -> pb.ListJobsReply:
        reply = pb.ListJobsReply()
        for record in self.daemon.journal.list(request.limit or 50):
            reply.jobs.append(
                pb.JobSummary(
                    job_id=record.job_id,
                    state=record.state,
                    source=str(record.job.source),
                    prompt=record.job.prompt,
                    start=record.job.start,
                    frames=record.job.frames,
                    submitted_unix=record.submitted,
                    finished_unix=record.finished or 0.0,
                    reason=record.reason,
                    attempts=record.attempts,
                )
            )
        return reply


def _no_job(job_id: str) -> JobNotFound:
    return JobNotFound(f"no job {job_id!r}: `v2vz jobs` lists the known ones")


def _cancel_if_unfinished(daemon: Daemon, job_id: str) -> None:
    record = daemon.journal.get(job_id)
    if record is not None and record.state in (JobState.QUEUED, JobState.RUNNING):
        log.info("watcher of %s went away with cancel_on_disconnect: cancelling", job_id)
        daemon.worker.request_cancel(job_id)


def serve_forever(config: DaemonConfig) -> None:
    """`v2vz serve`: run until SIGINT/SIGTERM, logging to stderr."""
    import signal

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    daemon = Daemon(config)
    daemon.start()
    while not stop.wait(0.5):
        if daemon.slot.error:
            break
    daemon.stop()
    if daemon.slot.error:
        raise ModelUnavailable(daemon.slot.error)
    if any(thread.is_alive() for thread in daemon.threads):
        # The model was still loading (inside torch's C++ code): interpreter finalisation would abort the process.
        # Everything durable is already in the journal and the endpoint file is gone, so leave at once.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
