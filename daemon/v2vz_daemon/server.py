"""The v2vz daemon: one long-lived process that loads the model once and runs edits one at a time over gRPC.

- Jobs are journaled in SQLite before SubmitEdit returns, so a restart never loses one (see journal.py).
- One worker thread runs jobs in submission order; every progress step, frame and outcome becomes a numbered
  event in the journal, which WatchJob streams (and re-streams after a disconnect from the last sequence seen).
- Re-prompts of a clip reuse its inversion from the on-disk cache (see inversion_cache.py).
- Security: a Unix socket in a 0700 folder (or loopback), a per-user endpoint file (0600) holding the address and a
  random token, and an interceptor that refuses every call without the token except the health check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import platform
import secrets
import socket
import sys
import tempfile
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
from v2vz.client import endpoint_path
from v2vz.errors import Cancelled, InvalidArgument, MediaError, MediaNotFound, ModelUnavailable, V2vzError
from v2vz.proto_mapping import job_from_request
from v2vz.v1 import editor_pb2 as pb
from v2vz.v1 import editor_pb2_grpc
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_daemon.journal import EventRecord, Journal

log = logging.getLogger("v2vz.daemon")

PROTOCOL_VERSION = 2  # 2: Progress.window / windows
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Editor"].full_name
TERMINAL_EVENTS = ("done", "failed", "cancelled")
MAX_MESSAGE = 64 * 1024 * 1024
FRAME_CHUNK = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def status_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC status that tells a client what kind of problem a job or request has."""
    if isinstance(error, MediaNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, MediaError | ModelUnavailable):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT
    if type(error).__name__ == "OutOfMemoryError":
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL


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


def resolve_listen(config: DaemonConfig) -> str:
    """The address to bind: refuse anything but loopback or a Unix socket unless remote access was asked for."""
    if config.listen is None:
        if os.name == "posix":
            return f"unix:{config.endpoint_file.parent / 'daemon.sock'}"
        return "127.0.0.1:0"
    if config.listen.startswith("unix:"):
        return config.listen
    host = config.listen.rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS and not config.allow_remote:
        raise InvalidArgument(
            f"refusing to listen on {config.listen}: only loopback or a Unix socket without --allow-remote"
        )
    return config.listen


class TokenInterceptor(grpc.ServerInterceptor):
    """Every call but the health check must carry `authorization: Bearer <token>` from the endpoint file."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        return _refusing(handler) if handler else None


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def deny(request, context):
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong token: read it from the daemon's endpoint file (v2vz finds it by itself)",
        )

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(deny, handler.request_deserializer, handler.response_serializer)


class Daemon:
    """The server, its model, its journal, its cache and its worker."""

    def __init__(self, config: DaemonConfig, pipeline_factory=None) -> None:
        self.config = config
        self.token = secrets.token_hex(32)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.state_dir / "journal.sqlite")
        self.cache = InversionCache(config.state_dir / "inversions", config.cache_max_bytes)
        self.uploads = config.state_dir / "uploads"
        self.pipeline = None
        self.model_error: str | None = None
        self.device = "loading"
        self.dtype = ""
        self._pipeline_factory = pipeline_factory or self._load_pipeline
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._version = 0  # bumped on every event: watchers wait only when nothing new has happened
        self._cancel: set[str] = set()
        self.health = health.HealthServicer()
        self.server: grpc.Server | None = None
        self.address = ""
        self._threads: list[threading.Thread] = []
        self.versions: dict[str, str] = {}

    # ----------------------------------------------------------------------------------------------------------
    # Life cycle

    def start(self) -> str:
        """Bind, start serving (NOT_SERVING until the model is loaded), write the endpoint file; returns the address."""
        self._refuse_second_daemon()
        self.versions = _import_engine()
        requeued = self.journal.recover(self.config.max_attempts)
        if requeued:
            log.info("re-queued %d job(s) interrupted by the last shutdown: %s", len(requeued), ", ".join(requeued))
        address = resolve_listen(self.config)
        if address.startswith("unix:"):
            sock = Path(address[5:])
            sock.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(sock.parent, 0o700)
            sock.unlink(missing_ok=True)
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="v2vz-rpc"),
            interceptors=[TokenInterceptor(self.token)],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        editor_pb2_grpc.add_EditorServicer_to_server(EditorServicer(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        port = self.server.add_insecure_port(address)
        if not address.startswith("unix:"):
            address = f"{address.rsplit(':', 1)[0]}:{port}"
        self.address = address
        self.server.start()
        self._write_endpoint()
        for target, name in ((self._load, "v2vz-loader"), (self._work, "v2vz-worker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listening on %s (endpoint file %s)", self.address, self.config.endpoint_file)
        return address

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving; a running job stays 'running' in the journal and is re-queued by the next start."""
        self._stopping.set()
        self._notify()
        if self.server:
            self.server.stop(grace).wait()
        for thread in self._threads:
            if thread.name == "v2vz-worker":  # the loader may be stuck in a slow load: it is a daemon thread
                thread.join(timeout=grace + 30)
        try:
            if json.loads(self.config.endpoint_file.read_text()).get("token") == self.token:
                self.config.endpoint_file.unlink()
        except (OSError, ValueError):
            pass

    def _refuse_second_daemon(self) -> None:
        path = self.config.endpoint_file
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        pid = previous.get("pid")
        if pid and pid != os.getpid() and _pid_alive(pid) and _reachable(previous.get("address", "")):
            raise InvalidArgument(f"a v2vz daemon is already running (pid {pid}, {previous.get('address')})")

    def _write_endpoint(self) -> None:
        path = self.config.endpoint_file
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(path.parent, 0o700)
        data = {"address": self.address, "token": self.token, "pid": os.getpid(), "version": __version__}
        fd, tmp = tempfile.mkstemp(prefix=".endpoint-", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    # ----------------------------------------------------------------------------------------------------------
    # Model and worker

    def _load_pipeline(self):
        from v2vz_daemon.engine.models import load_model
        from v2vz_daemon.engine.pipeline import VideoEditPipeline

        model = load_model(self.config.model, self.config.device, self.config.cache_dir)
        return VideoEditPipeline(model)

    def _load(self) -> None:
        try:
            self.pipeline = self._pipeline_factory()
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, never a silent NOT_SERVING forever
            self.model_error = str(exc) if isinstance(exc, V2vzError) else f"{type(exc).__name__}: {exc}"
            log.error("the model could not be loaded: %s", self.model_error)
            return
        model = self.pipeline.model
        self.device, self.dtype = _describe_device(model.device), str(model.dtype).removeprefix("torch.")
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._ready.set()
        self._notify()
        log.info("model %s ready on %s (%s)", model.name, self.device, self.dtype)

    def _work(self) -> None:
        while not self._stopping.is_set():
            if not self._ready.wait(timeout=0.2):
                continue
            record = self.journal.claim_next()
            if record is None:
                with self._changed:
                    self._changed.wait(timeout=0.5)
                continue
            self._run(record)

    def _run(self, record) -> None:
        from v2vz_daemon.engine.run import free_device_memory, run_job

        job_id = record.job_id
        if self.journal.cancel_requested(job_id):
            self._finish(job_id, "cancelled", {"reason": "cancelled before it started"})
            return
        self.emit(job_id, "progress", {"stage": "start", "step": 0, "total": 1, "cached": False})

        window = {"window": 0, "windows": 0}  # which window the engine is on: sent with every progress event

        def progress(stage: str, step: int, total: int) -> None:
            if stage == "window":
                window.update(window=step, windows=total)
            cached = stage == "cached-inversion"  # the engine's name; on the wire: inversion, cached, done
            stage = "inversion" if cached else stage
            payload = {"stage": stage, "step": step, "total": total, "cached": cached, **window}
            self.emit(job_id, "progress", payload)

        def cancel() -> bool:
            return job_id in self._cancel or self._stopping.is_set()

        def on_frame(index: int, path: Path) -> None:
            self.emit(job_id, "frame", {"index": index, "path": str(path)})

        try:
            result = run_job(record.job, self.pipeline, progress, cancel, cache=self.cache, on_frame=on_frame)
        except Cancelled as exc:
            if self._stopping.is_set() and job_id not in self._cancel:
                log.info("job %s interrupted by shutdown; it runs again at the next start", job_id)
                return  # left 'running': recover() re-queues it
            self._finish(job_id, "cancelled", {"reason": str(exc)})
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's one-line reason, the daemon lives on
            code = status_for(exc)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                reason = "the GPU ran out of memory: try fewer frames or a smaller --size (the daemon is still up)"
            elif code == grpc.StatusCode.INTERNAL:
                log.exception("job %s failed", job_id)
                reason = f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            else:
                reason = str(exc)
            self._finish(job_id, "failed", {"reason": reason, "code": code.name})
        else:
            payload = {
                "out_mp4": str(result.mp4) if result.mp4 else "",
                "frame_paths": [str(p) for p in result.frame_paths],
                "timings": result.timings,
                "inversion_cached": result.inversion_cached,
            }
            self._finish(job_id, "done", payload)
        finally:
            self._cancel.discard(job_id)
            free_device_memory()

    def _finish(self, job_id: str, state: str, payload: dict) -> None:
        reason = payload.pop("reason", "")
        self.journal.finish(job_id, state, reason=reason, result=payload)  # writes the terminal event too
        self._notify()

    # ----------------------------------------------------------------------------------------------------------
    # Events

    def emit(self, job_id: str, kind: str, payload: dict) -> EventRecord:
        event = self.journal.append_event(job_id, kind, payload)
        self._notify()
        return event

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        with self._changed:
            if self._version == seen:
                self._changed.wait(timeout)
            return self._version

    @property
    def version(self) -> int:
        return self._version

    def request_cancel(self, job_id: str) -> str:
        state = self.journal.request_cancel(job_id)
        if state == "running":
            self._cancel.add(job_id)
        self._notify()
        return state


class EditorServicer(editor_pb2_grpc.EditorServicer):
    """The v2vz.v1.Editor service: validates requests synchronously, then hands jobs to the journal."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def GetInfo(self, request, context) -> pb.DaemonInfo:
        daemon = self.daemon
        info = pb.DaemonInfo(
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            model=daemon.config.model,
            device=daemon.device if daemon.model_error is None else f"failed: {daemon.model_error}",
            dtype=daemon.dtype,
            ready=daemon.pipeline is not None,
        )
        info.versions.update(daemon.versions)
        total, used = _memory()
        info.memory_total_bytes, info.memory_allocated_bytes = total, used
        return info

    def UploadMedia(self, request_iterator, context) -> pb.UploadedMedia:
        uploads = self.daemon.uploads
        uploads.mkdir(parents=True, exist_ok=True)
        digest, size, name = hashlib.sha256(), 0, ""
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=uploads)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in request_iterator:
                    name = name or Path(chunk.filename).name
                    digest.update(chunk.data)
                    size += len(chunk.data)
                    handle.write(chunk.data)
            if size == 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the upload was empty: send the media's bytes")
            sha = digest.hexdigest()
            media_id = f"{sha[:24]}{Path(name).suffix.lower()}"
            os.replace(tmp, uploads / media_id)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return pb.UploadedMedia(media_id=media_id, size_bytes=size, sha256=sha)

    def SubmitEdit(self, request, context) -> pb.SubmitEditReply:
        from v2vz_daemon.engine import video

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
            job = job_from_request(request, daemon.config.model, source)
            info = video.probe(job.source)
            job = job.through_end(info.frame_count)  # the journal keeps the real count
            video.check_range(info, job.start, job.frames)
        except V2vzError as exc:
            context.abort(status_for(exc), str(exc))
        record = daemon.journal.submit(job, client=request.client, stream_frames=request.stream_frames)
        daemon._notify()
        ahead = max(0, daemon.journal.queue_position(record.job_id) - 1)
        return pb.SubmitEditReply(job_id=record.job_id, queue_position=ahead)

    def WatchJob(self, request, context) -> Iterator[pb.JobEvent]:
        daemon = self.daemon
        record = daemon.journal.get(request.job_id)
        if record is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}: `v2vz jobs` lists the known ones")
        if request.cancel_on_disconnect:
            context.add_callback(lambda: _cancel_if_unfinished(daemon, request.job_id))
        last = request.after_sequence
        final = _final_event(daemon, request.job_id)
        if final is not None and final.sequence <= last:
            yield from _to_pb(final, record.stream_frames)  # attached past the end: say how it ended, and stop
            return
        while True:
            seen = daemon.version
            for event in daemon.journal.events_after(request.job_id, last):
                yield from _to_pb(event, record.stream_frames)
                last = event.sequence
                if event.kind in TERMINAL_EVENTS:
                    return
            if not context.is_active() or daemon._stopping.is_set():
                return
            daemon.wait_for_change(seen, timeout=1.0)

    def CancelJob(self, request, context) -> pb.CancelJobReply:
        try:
            state = self.daemon.request_cancel(request.job_id)
        except KeyError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}: `v2vz jobs` lists the known ones")
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


def _final_event(daemon: Daemon, job_id: str) -> EventRecord | None:
    """The done/failed/cancelled event of a finished job, else None."""
    record = daemon.journal.get(job_id)
    if record is None or record.state not in TERMINAL_EVENTS:
        return None
    events = daemon.journal.events_after(job_id, 0)
    return next((e for e in reversed(events) if e.kind in TERMINAL_EVENTS), None)


def _cancel_if_unfinished(daemon: Daemon, job_id: str) -> None:
    record = daemon.journal.get(job_id)
    if record is not None and record.state in ("queued", "running"):
        log.info("watcher of %s went away with cancel_on_disconnect: cancelling", job_id)
        daemon.request_cancel(job_id)


def _to_pb(event: EventRecord, stream_frames: bool) -> Iterator[pb.JobEvent]:
    """One journal event as wire events: a frame with stream_frames is sent as PNG chunks with one sequence."""
    base = dict(job_id=event.job_id, sequence=event.sequence, time_unix=event.time)
    payload = event.payload
    if event.kind == "queued":
        # The journal counts from 1 (1: next to run); the wire counts the queued jobs ahead (0: next to run).
        yield pb.JobEvent(**base, queued=pb.Queued(position=max(0, payload.get("position", 1) - 1)))
    elif event.kind == "progress":
        yield pb.JobEvent(**base, progress=pb.Progress(**payload))
    elif event.kind == "frame":
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
    elif event.kind == "done":
        yield pb.JobEvent(
            **base,
            done=pb.Done(
                out_mp4=payload.get("out_mp4", ""),
                frame_paths=payload.get("frame_paths", []),
                timings=payload.get("timings", {}),
                inversion_cached=payload.get("inversion_cached", False),
            ),
        )
    elif event.kind == "failed":
        yield pb.JobEvent(**base, failed=pb.Failed(reason=payload.get("reason", ""), code=payload.get("code", "")))
    elif event.kind == "cancelled":
        yield pb.JobEvent(**base, cancelled=pb.Cancelled(reason=payload.get("reason", "")))


def _import_engine() -> dict[str, str]:
    """Import torch, diffusers, transformers and the engine on the calling (main) thread, before any other thread
    starts: their lazy module machinery is not thread-safe, and a model loading in one thread while a request
    imports in another fails with "cannot import name ... from partially initialised module". Returns versions."""
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: F401 - resolve lazy imports
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401

    import v2vz_daemon.engine.models
    import v2vz_daemon.engine.pipeline
    import v2vz_daemon.engine.run
    import v2vz_daemon.engine.video  # noqa: F401

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "grpc": grpc.__version__,
    }


def _describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _memory() -> tuple[int, int]:
    """(total, in use) bytes of the device the model runs on: GPU memory on CUDA, else this process's RSS."""
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return total, total - free
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    try:
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = 0
    return total, rss


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reachable(address: str) -> bool:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = address[5:].removeprefix("//")
    else:
        host, _, port = address.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_STREAM)
        target = (host.strip("[]"), int(port or 0))
    sock.settimeout(0.5)
    try:
        sock.connect(target)
    except OSError:
        return False
    finally:
        sock.close()
    return True


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
        if daemon.model_error:
            break
    daemon.stop()
    if daemon.model_error:
        raise ModelUnavailable(daemon.model_error)
    if any(thread.is_alive() for thread in daemon._threads):
        # The model was still loading (inside torch's C++ code): interpreter finalisation would abort the process.
        # Everything durable is already in the journal and the endpoint file is gone, so leave at once.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
