"""The v2vz daemon: one long-lived process that loads the model once and runs edits one at a time over gRPC.

This module holds the daemon's configuration and life cycle (`Daemon`) and the v2vz.v1 Editor service, which only
maps requests to the daemon's calls and their replies. The parts:

- security.py: the address, the private socket folder, the token interceptor;
- model_slot.py: the model, loaded on a thread of its own; health is SERVING once it is ready;
- journal.py: every job and event in SQLite before a call returns, so a restart never loses one;
- admission.py: whether a SubmitEdit request is taken, and the resolved job (testable without gRPC);
- uploads.py: UploadMedia's files, and the temporaries an interrupted job left, swept at start;
- job_loop.py: one job loop thread runs jobs in submission order (one per model worker with a cluster);
- cancels.py: the daemon's one registry of cancels, whichever job loop runs it;
- cluster/: with --workers or --ray, the model workers are Ray actors (imported only then);
- event_hub.py: events from the journal to every WatchJob stream (and again after a reconnect);
- wire.py: journal events and jobs as wire messages;
- logs.py: the daemon's log file, a record per line;
- inversion_cache.py: re-prompts of a clip reuse its inversion from disk.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from v2vz import __version__
from v2vz.api.endpoint import (
    DAEMON_LOG_NAME,
    Endpoint,
    remove_endpoint_if_mine,
    write_endpoint,
)
from v2vz.api.errors import ERROR_METADATA_KEY, Busy, InvalidArgument, ModelUnavailable, V2vzError, status_of
from v2vz.api.events import WATCHING_METADATA_KEY, JobState
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.v1 import editor_pb2_grpc
from v2vz_daemon import security
from v2vz_daemon.admission import admit, submit_notes, uploads_folder
from v2vz_daemon.cancels import CancelRegistry
from v2vz_daemon.config import DaemonConfig
from v2vz_daemon.event_hub import EventHub
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_daemon.job_loop import JobLoop
from v2vz_daemon.journal import Journal
from v2vz_daemon.logs import LOG_FORMAT, OneLineFormatter, open_log
from v2vz_daemon.model_slot import ModelSlot, PipelineFactory, import_engine, memory
from v2vz_daemon.uploads import UPLOAD_PREFIX, store_upload, sweep_temporaries, sweep_temporaries_in
from v2vz_daemon.wire import job_summary, to_wire

if TYPE_CHECKING:
    from v2vz_daemon.cluster.dispatch import WorkerState
    from v2vz_daemon.cluster.service import Cluster

log = logging.getLogger("v2vz.daemon")

# 2: window / windows; 3: ListJobs pages; 4: status, notes, job details; 5: formats, takes, previews; 6: workers, retry
PROTOCOL_VERSION = 7
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Editor"].full_name
MAX_SEND = 64 * 1024 * 1024
MAX_RECEIVE = 8 * 1024 * 1024  # requests are small; uploads come in 1 MiB chunks
MAX_PAGE = 200  # jobs per ListJobs reply
MAX_SEQUENCE = 2**63 - 1  # the journal's integers


class Daemon:
    """The server and its parts: model slot, journal, event hub, cancels, inversion cache and job loops."""

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
        for folder in (config.state_dir, config.state_dir / "inversions", uploads_folder(config)):
            security.own_private_folder(folder)  # prompts, paths and the clips' inversions: this user's only
        self.journal = Journal(config.state_dir / "journal.sqlite", on_writable=self._journal_writable)
        self.cache = InversionCache(config.state_dir / "inversions", config.cache_max_bytes)
        self.uploads = uploads_folder(config)
        self.hub = EventHub(self.journal)
        self.stopping = threading.Event()
        self.cancels = CancelRegistry(self.journal, self.hub)  # one for every job loop
        self.cluster: Cluster | None = None
        if config.cluster is not None:
            from v2vz_daemon.cluster.service import Cluster

            self.cluster = Cluster(
                config.cluster, config.model, config.cache_dir, self.cache.folder, config.cache_max_bytes
            )
        self.job_loops = [self._new_job_loop()]  # with a cluster: one per model worker, once start() knows how many
        self.server: grpc.Server | None = None
        self.address = ""
        self.threads: list[threading.Thread] = []
        self.versions: dict[str, str] = {}
        self.streams = threading.BoundedSemaphore(config.max_streams)
        self.log_file = config.state_dir / DAEMON_LOG_NAME  # a line per job transition; 5 MiB x 4 files
        self._log_handler: logging.Handler | None = None

    @property
    def ready(self) -> threading.Event:
        return self.cluster.ready if self.cluster is not None else self.slot.ready

    @property
    def load_error(self) -> str | None:
        """Why jobs can never run: the model (or the cluster's workers) could not be loaded."""
        return self.cluster.error if self.cluster is not None else self.slot.error

    def _new_job_loop(self) -> JobLoop:
        return JobLoop(self.journal, self.hub, self.slot, self.cache, self.stopping, self.cancels, cluster=self.cluster)

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
            self.job_loops += [self._new_job_loop() for _ in range(count - 1)]
            self.versions["ray"] = self.cluster.ray.__version__
        for record in self.journal.running():
            sweep_temporaries(record.job)  # what the interrupted attempt was writing when the daemon died
        sweep_temporaries_in(self.uploads, UPLOAD_PREFIX)
        requeued = self.journal.recover(self.config.max_attempts)
        if requeued:
            log.info("re-queued %d job(s) interrupted by the last shutdown: %s", len(requeued), ", ".join(requeued))
        address = security.resolve_listen(self.config.listen, self.config.endpoint_file, self.config.allow_remote)
        security.prepare_socket(address)
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=self.config.rpc_threads, thread_name_prefix="v2vz-rpc"),
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
            (loop.run, f"v2vz-job-loop-{n + 1}" if n else "v2vz-job-loop") for n, loop in enumerate(self.job_loops)
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
            if thread.name.startswith("v2vz-job-loop"):  # the loader may be stuck in a slow load: a daemon thread
                thread.join(timeout=grace + 30)
        if self.cluster is not None:
            self.cluster.stop()
        remove_endpoint_if_mine(self.config.endpoint_file, self.token)
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        self.state_lock.release()  # last: the next daemon finds everything of this one settled

    def describe(self) -> pb.DaemonInfo:
        """GetInfo's reply: version, model, device, readiness, queue, the running job and the cluster's workers."""
        slot, cluster = self.slot, self.cluster
        device = slot.device if cluster is None else cluster.describe()
        info = pb.DaemonInfo(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            model=slot.model,
            default_model=self.config.model,
            allowed_models=list(self.config.allowed_models),
            device=device if self.load_error is None else f"failed: {self.load_error}",
            dtype=slot.dtype if cluster is None else next((w.dtype for w in cluster.workers() if w.dtype), ""),
            ready=self.ready.is_set() if cluster is not None else slot.pipeline is not None,
            queued_jobs=self.journal.count(JobState.QUEUED),
            journal_writable=self.journal.writable,
            address=self.address,
        )
        running = [loop.running for loop in self.job_loops if loop.running is not None]
        if running:
            info.running_job, info.running_stage = running[0]
        if cluster is not None:
            info.workers.extend(_worker_info(worker) for worker in cluster.workers())
        info.versions.update(self.versions)
        info.memory_total_bytes, info.memory_allocated_bytes = memory()
        return info

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
        return self.daemon.describe()

    def UploadMedia(self, request_iterator, context) -> pb.UploadedMedia:
        try:
            stored = store_upload(request_iterator, self.daemon.uploads)
        except V2vzError as exc:
            _abort(context, exc)
        return pb.UploadedMedia(media_id=stored.media_id, size_bytes=stored.size_bytes, sha256=stored.sha256)

    def SubmitEdit(self, request, context) -> pb.SubmitEditReply:
        daemon = self.daemon
        try:
            job = admit(request, daemon.config, daemon.journal, remote=self._remote(context))
            record = daemon.journal.submit(job, client=request.client, stream_frames=request.stream_frames)
            ahead = max(0, daemon.journal.queue_position(record.job_id) - 1)
        except V2vzError as exc:  # refused, or a full disk: nothing was recorded
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
        return pb.SubmitEditReply(job_id=record.job_id, queue_position=ahead, notes=submit_notes(job))

    def _remote(self, context: grpc.ServicerContext) -> bool:
        """A call that did not come through the Unix socket, to a daemon that listens beyond loopback."""
        return self.daemon.config.allow_remote and not context.peer().startswith("unix:")

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
            after = min(request.after_sequence, MAX_SEQUENCE)

            def keep_going() -> bool:
                return context.is_active() and not daemon.stopping.is_set()

            for event in hub.follow(job_id, after, keep_going):
                yield from to_wire(event, record.stream_frames)
        finally:
            daemon.streams.release()

    def CancelJob(self, request, context) -> pb.CancelJobReply:
        journal = self.daemon.journal
        try:
            job_id = journal.resolve(request.job_id)
            had_ended = JobState(journal.get(job_id).state).is_terminal()
            state = self.daemon.cancels.request(job_id)
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
        reply.jobs.extend(job_summary(record) for record in records[:limit])
        return reply


def _worker_info(worker: WorkerState) -> pb.WorkerInfo:
    """A cluster's model worker as GetInfo shows it: every field of WorkerInfo, by the same name."""
    return pb.WorkerInfo(**{field.name: getattr(worker, field.name) for field in pb.WorkerInfo.DESCRIPTOR.fields})


def _cancel_if_unfinished(daemon: Daemon, job_id: str) -> None:
    record = daemon.journal.get(job_id)
    if record is not None and record.state in (JobState.QUEUED, JobState.RUNNING):
        log.info("watcher of %s went away with cancel_on_disconnect: cancelling", job_id)
        daemon.cancels.request(job_id)


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
