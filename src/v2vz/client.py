"""The daemon's gRPC client: the v2vz.v1 Editor calls, each failure raised as the contract's one-line error.

Torch-free: it imports only grpc and the contract (`v2vz.api`). It reads the endpoint file (`v2vz.api.endpoint`)
that the daemon writes when it starts; every call except the gRPC health check carries the file's token as
`authorization: Bearer <token>` metadata.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import grpc

from v2vz import __version__
from v2vz.api.endpoint import Endpoint, endpoint_path, read_endpoint
from v2vz.api.errors import (
    ERROR_METADATA_KEY,
    DaemonIncompatible,
    DaemonUnauthenticated,
    DaemonUnavailable,
    InvalidArgument,
    JobLost,
    JobNotFound,
    MediaNotFound,
    V2vzError,
    error_class,
    one_line,
)
from v2vz.api.events import TERMINAL_TYPES, WATCHING_METADATA_KEY
from v2vz.api.job import EditJob
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.v1 import editor_pb2_grpc
from v2vz.api.wire import job_to_request

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_SEQUENCE = 2**63 - 1  # the daemon's journal numbers events below this (after_sequence is clamped to it)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_http_proxy", 0),  # the daemon is local: never route 127.0.0.1 through $http_proxy
    ("grpc.primary_user_agent", f"v2vz-client/{__version__}"),
]


def raise_for_rpc_error(
    error: grpc.RpcError,
    *,
    job_id: str | None = None,
    address: str | None = None,
    endpoint_file: Path | None = None,
) -> NoReturn:
    """Raise the contract's error for a failed call: the class the daemon named, with its one-line details.

    The daemon names the class in the trailing metadata `v2vz-error` (errors.py); a failure of gRPC itself (no
    daemon, a refused token, a timeout) names none and is told by its status, with a message said here.
    job_id: the call was about that job (a bare NOT_FOUND then means an unknown job, not missing media).
    address, endpoint_file: named in the messages for an unreachable daemon or a refused token.
    """
    code = error.code() if callable(getattr(error, "code", None)) else None
    status = code.name if code is not None else "UNKNOWN"
    details = one_line(error.details() if callable(getattr(error, "details", None)) else "") or ""
    named = _error_name(error)
    where = f" at {address}" if address else ""
    endpoint_file = endpoint_file or endpoint_path()
    cls = error_class(status, named)
    if named is None and cls is MediaNotFound and job_id is not None:
        cls = JobNotFound
    if named is not None:
        raise cls(details or f"the daemon refused the request ({status})") from None
    if cls is JobNotFound:
        raise JobNotFound(details or f"the daemon has no job {job_id}: list jobs with `v2vz jobs`") from None
    if cls is DaemonUnauthenticated:
        raise DaemonUnauthenticated(
            f"the daemon{where} refused the token in {endpoint_file}: restart `v2vz serve` or check V2VZ_ENDPOINT"
            + (f" ({details})" if details else "")
        ) from None
    if status == "UNAVAILABLE":
        if details.startswith("failed to connect to all addresses") and "error: " in details:
            details = details.rsplit("error: ", 1)[1]  # e.g. "Connection refused", "No such file or directory"
        raise DaemonUnavailable(
            f"the v2vz daemon{where} is not reachable ({details or 'unavailable'}): it may have stopped; "
            "start it with `v2vz serve`"
        ) from None
    if status == "DEADLINE_EXCEEDED":
        raise DaemonUnavailable(
            f"the v2vz daemon{where} did not answer in time: check that it is not stuck (restart `v2vz serve`)"
        ) from None
    if cls is DaemonIncompatible:
        raise DaemonIncompatible(
            f"the daemon{where} does not implement this call ({details or 'unimplemented'}): "
            "its version differs from this client's; restart `v2vz serve` with the same v2vz version"
        ) from None
    if cls is V2vzError or status == "INTERNAL":
        raise cls(f"the daemon failed ({status}): {details or 'no details'}") from None
    raise cls(details or _FALLBACK.get(status, f"the daemon refused the request ({status})")) from None


_FALLBACK = {
    "INVALID_ARGUMENT": "the daemon refused the request as invalid",
    "NOT_FOUND": "the daemon cannot find the source media",
    "FAILED_PRECONDITION": "the daemon cannot decode the source media",
    "RESOURCE_EXHAUSTED": "the daemon ran out of GPU memory: edit fewer frames or use a smaller --size",
}


def _error_name(error: grpc.RpcError) -> str | None:
    """The error class the daemon named in the trailing metadata, if any."""
    trailing = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    for key, value in trailing or ():
        if key == ERROR_METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class Client:
    """A connection to the daemon. Use it as a context manager, or call close().

    endpoint: where and how to connect; None reads the endpoint file (and re-reads it when follow() re-attaches,
    so that a restarted daemon with a new address or token is found).
    timeout: seconds for each unary call (WatchJob streams have no deadline).
    reconnect_for: how long follow() keeps trying to re-attach after losing the daemon.
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
        return self.cancel_job(job_id).state

    def cancel_job(self, job_id: str) -> pb.CancelJobReply:
        """Cancel a job named by its id or any unique start of it; the reply has its state and its whole id."""
        return self._unary(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id), job_id=job_id)

    def jobs(self, limit: int = 50) -> list[pb.JobSummary]:
        """The newest `limit` jobs, newest first, asked for a page at a time (a page stays small)."""
        listed: list[pb.JobSummary] = []
        token = ""
        while len(listed) < limit:
            page = min(limit - len(listed), 2**32 - 1)  # the field is 32 bits; the daemon sends 200 at most anyway
            reply = self._unary(self._stub.ListJobs, pb.ListJobsRequest(limit=page, page_token=token))
            listed.extend(reply.jobs)
            token = reply.next_page_token
            if not token or not reply.jobs:
                break
        return listed[:limit]

    def follow(self, job_id: str, after: int = 0, reconnect: bool = True) -> Iterator[pb.JobEvent]:
        """The job's events after sequence `after`, live, until its done/failed/cancelled event.

        When the daemon goes away mid-stream (UNAVAILABLE, or a stream that ends before the job did) it re-attaches
        after the last sequence seen, with backoff, for up to `reconnect_for` seconds since the last event or the
        last re-attach that succeeded (a queued job may say nothing for longer than that, over several restarts).
        The daemon resends the terminal event of an ended job when `after` is past it, so that the outcome is known.
        """
        if after < 0:
            raise InvalidArgument(f"after must be 0 or more, got {after}")
        last = min(after, MAX_SEQUENCE)  # past the end either way: the terminal event comes again
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
                if _attached(call):  # re-attached: the deadline counts from the next loss, not the first one
                    self._reached = True
                    give_up_at, delay = None, 0.1
                for event in call:
                    kind = event.WhichOneof("kind")
                    if event.sequence and event.sequence <= resume_after and kind not in TERMINAL_TYPES:
                        continue  # already seen (a daemon that resent more than asked)
                    # A terminal event always counts: after_sequence past the end of an ended job gets it again.
                    self._reached = True
                    last = max(last, event.sequence)
                    partial_frame = kind == "frame" and event.frame.chunk + 1 < event.frame.chunks
                    give_up_at, delay = None, 0.1
                    yield event
                    if kind in TERMINAL_TYPES:
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
                lost = one_line(error.details()) or code.name.lower()
            finally:
                if call is not None:
                    call.cancel()
            seen = last - 1 if partial_frame and last > 0 else last
            if not reconnect:
                raise JobLost(f"lost job {job_id} ({lost}): re-attach with `v2vz attach {job_id} --after {seen}`")
            now = time.monotonic()
            give_up_at = give_up_at if give_up_at is not None else now + self.reconnect_for
            if now >= give_up_at:
                raise JobLost(
                    f"lost the v2vz daemon while watching job {job_id} ({lost}) and could not re-attach for "
                    f"{self.reconnect_for:.0f} s: start `v2vz serve`, then `v2vz attach {job_id} --after {seen}`"
                )
            time.sleep(min(delay, give_up_at - now))
            delay = min(delay * 2, 2.0)
            with contextlib.suppress(DaemonUnavailable):  # no endpoint file while the daemon restarts: try again
                self._reconnect()


def _attached(call: grpc.Call) -> bool:
    """Whether the daemon accepted the WatchJob stream: it says so in the initial metadata before any event.

    A daemon of protocol 6 or older sends none; then an event is the only sign, as it was.
    """
    metadata = call.initial_metadata()  # at once from our daemon; empty when the call failed
    return any(key == WATCHING_METADATA_KEY for key, _ in metadata or ())


def absolute_paths(job: EditJob) -> EditJob:
    """The job with its source, matte and outputs as absolute paths (of this process's working directory)."""
    return job.with_absolute_paths()
