"""The daemon's client: endpoint discovery, the token, and the v2vz.v1 Editor calls with one-line errors.

Torch-free: it imports only grpc and our own modules, so the CLI and the host plugins can use it as they are.
The daemon writes its endpoint file (see `endpoint_path`) when it starts; every call except the gRPC health check
carries the file's token as `authorization: Bearer <token>` metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc

from v2vz import __version__
from v2vz.errors import (
    DaemonUnauthenticated,
    DaemonUnavailable,
    InvalidArgument,
    JobNotFound,
    MediaError,
    MediaNotFound,
    V2vzError,
)
from v2vz.job import EditJob
from v2vz.proto_mapping import job_to_request
from v2vz.v1 import editor_pb2 as pb
from v2vz.v1 import editor_pb2_grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TERMINAL_KINDS = frozenset({"done", "failed", "cancelled"})
START_HINT = "start one with `v2vz serve`, or pass --local"

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_http_proxy", 0),  # the daemon is local: never route 127.0.0.1 through $http_proxy
    ("grpc.primary_user_agent", f"v2vz-client/{__version__}"),
]


def endpoint_path() -> Path:
    """Where the daemon writes (and the client reads) its endpoint file.

    `$V2VZ_ENDPOINT` if set, else `$XDG_RUNTIME_DIR/v2vz/endpoint.json`, else `~/.cache/v2vz/run/endpoint.json`.
    """
    explicit = os.environ.get("V2VZ_ENDPOINT")
    if explicit:
        return Path(explicit).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "v2vz" / "endpoint.json"
    return Path.home() / ".cache" / "v2vz" / "run" / "endpoint.json"


@dataclass(frozen=True)
class Endpoint:
    """How to reach a daemon: a gRPC address (`unix:/abs/path.sock` or `HOST:PORT`) and its token."""

    address: str
    token: str
    pid: int | None = None
    version: str | None = None


def read_endpoint(path: Path | None = None) -> Endpoint:
    """The endpoint a daemon wrote, or DaemonUnavailable with one line that says what to do."""
    path = endpoint_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DaemonUnavailable(f"no v2vz daemon is running (no endpoint file at {path}): {START_HINT}") from None
    except IsADirectoryError:
        raise DaemonUnavailable(f"the endpoint file {path} is a folder: remove it and {START_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise DaemonUnavailable(f"cannot read the endpoint file {path} ({reason}): {START_HINT}") from None
    broken = f"the endpoint file {path} is malformed"
    fix = "restart `v2vz serve` (it rewrites the file), or pass --local"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonUnavailable(f"{broken} (not JSON: {_one_line(str(exc))}): {fix}") from None
    if not isinstance(data, dict):
        raise DaemonUnavailable(f"{broken} (not a JSON object): {fix}")
    for key in ("address", "token"):
        if key not in data:
            raise DaemonUnavailable(f"{broken} (no {key!r}): {fix}")
        if not isinstance(data[key], str) or not data[key].strip():
            raise DaemonUnavailable(f"{broken} ({key!r} is not a non-empty string): {fix}")
    pid = data.get("pid")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
        raise DaemonUnavailable(f"{broken} ('pid' is not an integer): {fix}")
    version = data.get("version")
    return Endpoint(
        address=data["address"].strip(),
        token=data["token"].strip(),
        pid=pid,
        version=version if isinstance(version, str) else None,
    )


def _one_line(text: str, limit: int = 400) -> str:
    line = re.sub(r"\s+", " ", text or "").strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def raise_for_rpc_error(
    error: grpc.RpcError,
    *,
    job_id: str | None = None,
    address: str | None = None,
    endpoint_file: Path | None = None,
) -> NoReturn:
    """Raise the V2vzError of a failed call, with the daemon's one-line details.

    job_id: the call was about that job (NOT_FOUND then means an unknown job, not missing media).
    address, endpoint_file: named in the messages for an unreachable daemon or a refused token.
    """
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = _one_line(error.details() if callable(getattr(error, "details", None)) else "") or ""
    where = f" at {address}" if address else ""
    endpoint_file = endpoint_file or endpoint_path()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        raise InvalidArgument(details or "the daemon refused the request as invalid") from None
    if code == grpc.StatusCode.NOT_FOUND:
        if job_id is not None:
            raise JobNotFound(details or f"the daemon has no job {job_id}: list jobs with `v2vz jobs`") from None
        raise MediaNotFound(details or "the daemon cannot find the source media") from None
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        raise MediaError(details or "the daemon cannot decode the source media") from None
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        raise V2vzError(
            details or "the daemon ran out of GPU memory: edit fewer frames or use a smaller --size"
        ) from None
    if code == grpc.StatusCode.UNAUTHENTICATED:
        raise DaemonUnauthenticated(
            f"the daemon{where} refused the token in {endpoint_file}: restart `v2vz serve` or check V2VZ_ENDPOINT"
            + (f" ({details})" if details else "")
        ) from None
    if code == grpc.StatusCode.UNAVAILABLE:
        if details.startswith("failed to connect to all addresses") and "error: " in details:
            details = details.rsplit("error: ", 1)[1]  # e.g. "Connection refused", "No such file or directory"
        raise DaemonUnavailable(
            f"the v2vz daemon{where} is not reachable ({details or 'unavailable'}): it may have stopped; "
            f"start it with `v2vz serve`, or pass --local"
        ) from None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise DaemonUnavailable(
            f"the v2vz daemon{where} did not answer in time: check that it is not stuck (restart `v2vz serve`), "
            "or pass --local"
        ) from None
    if code == grpc.StatusCode.UNIMPLEMENTED:
        raise V2vzError(
            f"the daemon{where} does not implement this call ({details or 'unimplemented'}): "
            "its version differs from this client's; restart `v2vz serve` with the same v2vz version"
        ) from None
    name = code.name if code is not None else "UNKNOWN"
    raise V2vzError(f"the daemon failed ({name}): {details or 'no details'}") from None


class Client:
    """A connection to the daemon. Use it as a context manager, or call close().

    endpoint: where and how to connect; None reads the endpoint file (and re-reads it when watch() re-attaches,
    so that a restarted daemon with a new address or token is found).
    timeout: seconds for each unary call (WatchJob streams have no deadline).
    reconnect_for: how long watch() keeps trying to re-attach after losing the daemon.
    """

    def __init__(self, endpoint: Endpoint | None = None, timeout: float = 10.0, reconnect_for: float = 30.0):
        self._from_file = endpoint is None
        self._endpoint_file = endpoint_path()
        self.endpoint = read_endpoint(self._endpoint_file) if endpoint is None else endpoint
        self.timeout = timeout
        self.reconnect_for = reconnect_for
        self._reached = False  # a call went through: a later UNAVAILABLE means the daemon went away
        self._channel: grpc.Channel | None = None
        self._connect()

    # -- connection ------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        self._channel = grpc.insecure_channel(self.endpoint.address, options=CHANNEL_OPTIONS)
        self._stub = editor_pb2_grpc.EditorStub(self._channel)
        self._metadata = (("authorization", f"Bearer {self.endpoint.token}"),)

    def _reconnect(self) -> None:
        """A fresh channel (no inherited connection backoff), to the endpoint file's daemon as it is now."""
        if self._from_file:
            self.endpoint = read_endpoint(self._endpoint_file)
        self.close()
        self._connect()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fail(self, error: grpc.RpcError, job_id: str | None = None) -> NoReturn:
        raise_for_rpc_error(error, job_id=job_id, address=self.endpoint.address, endpoint_file=self._endpoint_file)

    def _unary(self, method: Any, request: Any, job_id: str | None = None) -> Any:
        try:
            reply = method(request, timeout=self.timeout, metadata=self._metadata, wait_for_ready=False)
        except grpc.RpcError as error:
            self._fail(error, job_id)
        self._reached = True
        return reply

    # -- calls -----------------------------------------------------------------------------------------------

    def info(self) -> pb.DaemonInfo:
        return self._unary(self._stub.GetInfo, pb.GetInfoRequest())

    def submit(self, job: EditJob, stream_frames: bool = False, client: str = "v2vz-cli") -> pb.SubmitEditReply:
        """Queue a job. Its paths are made absolute here: the daemon runs in another working directory."""
        request = job_to_request(absolute_paths(job), stream_frames=stream_frames, client=client)
        return self._unary(self._stub.SubmitEdit, request)

    def cancel(self, job_id: str) -> str:
        """Cancel a job; returns its state afterwards (cancelled, or done/failed when it had already ended)."""
        return self._unary(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id), job_id=job_id).state

    def jobs(self, limit: int = 50) -> list[pb.JobSummary]:
        return list(self._unary(self._stub.ListJobs, pb.ListJobsRequest(limit=limit)).jobs)

    def watch(self, job_id: str, after: int = 0, reconnect: bool = True) -> Iterator[pb.JobEvent]:
        """The job's events after sequence `after`, live, until its done/failed/cancelled event.

        When the daemon goes away mid-stream (UNAVAILABLE, or a stream that ends before the job did) it re-attaches
        after the last sequence seen, with backoff, for up to `reconnect_for` seconds since the last event.
        The daemon resends the terminal event of an ended job when `after` is past it, so that the outcome is known.
        """
        last = after
        partial_frame = False  # the last event was a chunk of a streamed frame with more chunks to come
        give_up_at: float | None = None
        delay = 0.1
        while True:
            call = None
            lost: str
            # The chunks of one streamed frame share a sequence: after losing some of them, ask for the whole frame
            # again (it restarts at chunk 0).
            resume_after = last - 1 if partial_frame and last > 0 else last
            try:
                request = pb.WatchJobRequest(job_id=job_id, after_sequence=resume_after)
                call = self._stub.WatchJob(request, metadata=self._metadata, wait_for_ready=False)
                for event in call:
                    kind = event.WhichOneof("kind")
                    if event.sequence and event.sequence <= resume_after and kind not in TERMINAL_KINDS:
                        continue  # already seen (a daemon that resent more than asked)
                    # A terminal event always counts: after_sequence past the end of an ended job gets it again.
                    self._reached = True
                    last = max(last, event.sequence)
                    partial_frame = kind == "frame" and event.frame.chunk + 1 < event.frame.chunks
                    give_up_at, delay = None, 0.1
                    yield event
                    if kind in TERMINAL_KINDS:
                        return
                lost = "the event stream ended before the job did"
            except grpc.RpcError as error:
                # UNAVAILABLE once the daemon was reached: it went away. While re-attaching, a refused token can
                # also mean that a restarted daemon has not yet written its new endpoint file.
                code = error.code()
                retry = code == grpc.StatusCode.UNAVAILABLE and self._reached
                retry = retry or (code == grpc.StatusCode.UNAUTHENTICATED and give_up_at is not None and reconnect)
                if not retry:
                    self._fail(error, job_id)
                lost = _one_line(error.details()) or code.name.lower()
            finally:
                if call is not None:
                    call.cancel()
            seen = last - 1 if partial_frame and last > 0 else last
            if not reconnect:
                raise DaemonUnavailable(
                    f"lost job {job_id} ({lost}): re-attach with `v2vz attach {job_id} --after {seen}`"
                )
            now = time.monotonic()
            give_up_at = give_up_at if give_up_at is not None else now + self.reconnect_for
            if now >= give_up_at:
                raise DaemonUnavailable(
                    f"lost the v2vz daemon while watching job {job_id} ({lost}) and could not re-attach for "
                    f"{self.reconnect_for:.0f} s: start `v2vz serve`, then `v2vz attach {job_id} --after {seen}`"
                )
            time.sleep(min(delay, give_up_at - now))
            delay = min(delay * 2, 2.0)
            with contextlib.suppress(DaemonUnavailable):  # no endpoint file while the daemon restarts: try again
                self._reconnect()


def absolute_paths(job: EditJob) -> EditJob:
    """The job with its source and outputs as absolute paths (of this process's working directory)."""

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(path).expanduser().resolve()

    return dataclasses.replace(
        job,
        source=absolute(job.source),
        out_mp4=absolute(job.out_mp4),
        out_frames_dir=absolute(job.out_frames_dir),
    )


EVENT_TYPES = {
    "queued": "queued",
    "progress": "progress",
    "frame": "frame",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}


def event_to_dict(event: pb.JobEvent) -> dict[str, Any]:
    """One event as plain JSON values, for `--events jsonl` (docs/events.md). PNG bytes are left out."""
    kind = event.WhichOneof("kind")
    data: dict[str, Any] = {
        "job_id": event.job_id,
        "sequence": event.sequence,
        "time": event.time_unix,
        "type": EVENT_TYPES.get(kind or "", "unknown"),
    }
    if kind == "queued":
        data["position"] = event.queued.position
    elif kind == "progress":
        progress = event.progress
        data.update(stage=progress.stage, step=progress.step, total=progress.total, cached=progress.cached)
        data.update(window=progress.window, windows=progress.windows)
    elif kind == "frame":
        data.update(index=event.frame.index, path=event.frame.path or None)
    elif kind == "done":
        done = event.done
        data.update(
            out_mp4=done.out_mp4 or None,
            frame_paths=list(done.frame_paths),
            timings={name: done.timings[name] for name in sorted(done.timings)},
            inversion_cached=done.inversion_cached,
        )
    elif kind == "failed":
        data.update(reason=event.failed.reason, code=event.failed.code)
    elif kind == "cancelled":
        data["reason"] = event.cancelled.reason
    return data


def summary_to_dict(job: pb.JobSummary) -> dict[str, Any]:
    """One row of `v2vz jobs --json`."""
    return {
        "job_id": job.job_id,
        "state": job.state,
        "source": job.source,
        "prompt": job.prompt,
        "start": job.start,
        "frames": job.frames,
        "submitted": job.submitted_unix or None,
        "finished": job.finished_unix or None,
        "reason": job.reason,
        "attempts": job.attempts,
    }
