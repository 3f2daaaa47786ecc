"""Errors a person can act on: each carries one line that says what is wrong and what to do.

Every class names the gRPC status it travels as and the exit code the CLI gives for it, so the three places that
used to map errors (the daemon's status, the client's exception, the CLI's exit code) all derive from this table:

- the daemon aborts a call with `error.status` and sends the class name in the trailing metadata `v2vz-error`;
- the client rebuilds the same class from that name (or, from a daemon that sends none, from the status alone);
- the CLI exits with `error.exit_code`; a failed job exits with `exit_code_for_status(its code)`.

No gRPC import here: statuses are the names of `grpc.StatusCode` members, so plugins and tests can read them too.
"""

from __future__ import annotations

import re

ERROR_METADATA_KEY = "v2vz-error"  # trailing metadata of a refused call: the class name of the error

EXIT_OK = 0
EXIT_FAILED = 1  # the job ran and failed for a reason that is not the input (out of memory, a bug), or was cancelled
EXIT_USER = 2  # the input, the set-up or the daemon's reachability is wrong: the one-line message says what to do
EXIT_LOST = 3  # the daemon went away while a job was followed: the job may still run, re-attach to learn its outcome
EXIT_INTERRUPTED = 130  # Ctrl-C


class V2vzError(Exception):
    """Base of every error a user can act on; its message is one line that says what to do."""

    status = "UNKNOWN"
    exit_code = EXIT_USER


class InvalidArgument(V2vzError):
    """A value is out of range or malformed (empty prompt, bad frame count, unknown option)."""

    status = "INVALID_ARGUMENT"


class RangeError(InvalidArgument):
    """The requested frame range is not inside the clip."""


class MediaNotFound(V2vzError):
    """The source media file does not exist."""

    status = "NOT_FOUND"


class MediaError(V2vzError):
    """The source exists but cannot be decoded as video."""

    status = "FAILED_PRECONDITION"


class ModelUnavailable(V2vzError):
    """The model cannot be found or loaded."""

    status = "FAILED_PRECONDITION"


class OutputUnwritable(V2vzError):
    """An output cannot be written where the job asks: a read-only or missing folder, a file where a folder must be."""

    status = "FAILED_PRECONDITION"


class OutputExists(V2vzError):
    """An output the job names exists already (or another job in flight writes it): takes never overwrite, unless
    the job says `overwrite`."""

    status = "ALREADY_EXISTS"


class PathNotAllowed(V2vzError):
    """A remote client named a path outside the folders the daemon's operator opened to it (`--media-root`)."""

    status = "PERMISSION_DENIED"


class JobNotFound(V2vzError):
    """The daemon knows no job of that id."""

    status = "NOT_FOUND"


class AmbiguousJob(InvalidArgument):
    """A job id prefix that starts more than one id: the message lists them."""


class ResourceExhausted(V2vzError):
    """The device ran out of memory (or another resource): not the input's fault, so a failed job exits 1."""

    status = "RESOURCE_EXHAUSTED"
    exit_code = EXIT_FAILED


class Busy(ResourceExhausted):
    """The daemon is at a limit of its own (open event streams): try again in a moment."""

    exit_code = EXIT_USER


class DiskFull(ResourceExhausted):
    """The disk (or quota) ran out while writing an output."""


class JournalFull(ResourceExhausted):
    """The daemon cannot record jobs: its state folder's disk is full. Nothing recorded is lost."""

    exit_code = EXIT_USER  # freeing space is the user's to do, like any set-up problem


class DaemonUnavailable(V2vzError):
    """No daemon is running, its endpoint file is unreadable, or it cannot be reached."""

    status = "UNAVAILABLE"


class DaemonUnauthenticated(DaemonUnavailable):
    """The daemon refused the token of the endpoint file (it was restarted, or the file belongs to another one)."""

    status = "UNAUTHENTICATED"


class JobLost(DaemonUnavailable):
    """The daemon went away while a job was followed and did not come back in time; the job may still run."""

    exit_code = EXIT_LOST


class DaemonIncompatible(V2vzError):
    """The daemon does not implement a call: its version differs from this client's."""

    status = "UNIMPLEMENTED"


class InternalError(V2vzError):
    """A bug of ours, reported with its one line: please report it."""

    status = "INTERNAL"
    exit_code = EXIT_FAILED


class ClusterUnavailable(V2vzError):
    """The Ray cluster cannot be used: the extra is not installed, the address or its token is wrong, no GPU is free."""

    status = "FAILED_PRECONDITION"


class WorkerLost(V2vzError):
    """A cluster's workers kept dying while they edited a window: the job failed after its retries were spent."""

    status = "ABORTED"
    exit_code = EXIT_FAILED


class Cancelled(Exception):
    """The job was cancelled between two diffusion steps (not an error of the user)."""

    status = "CANCELLED"
    exit_code = EXIT_FAILED


ERROR_CLASSES: dict[str, type[V2vzError]] = {
    cls.__name__: cls
    for cls in (
        V2vzError,
        InvalidArgument,
        RangeError,
        MediaNotFound,
        MediaError,
        ModelUnavailable,
        OutputUnwritable,
        OutputExists,
        PathNotAllowed,
        JobNotFound,
        AmbiguousJob,
        ResourceExhausted,
        Busy,
        DiskFull,
        JournalFull,
        DaemonUnavailable,
        DaemonUnauthenticated,
        JobLost,
        DaemonIncompatible,
        InternalError,
        ClusterUnavailable,
        WorkerLost,
    )
}

# The class a bare status stands for when the sender named none (an older daemon, a gRPC-level failure).
_BY_STATUS: dict[str, type[V2vzError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "NOT_FOUND": MediaNotFound,
    "FAILED_PRECONDITION": MediaError,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "PERMISSION_DENIED": PathNotAllowed,
    "ALREADY_EXISTS": OutputExists,
    "UNAVAILABLE": DaemonUnavailable,
    "DEADLINE_EXCEEDED": DaemonUnavailable,
    "UNAUTHENTICATED": DaemonUnauthenticated,
    "UNIMPLEMENTED": DaemonIncompatible,
    "INTERNAL": InternalError,
    "ABORTED": WorkerLost,
}


def error_class(status: str, name: str | None = None) -> type[V2vzError]:
    """The error class named by `name` (the `v2vz-error` metadata) if it is ours, else the one `status` stands for."""
    if name and name in ERROR_CLASSES:
        return ERROR_CLASSES[name]
    return _BY_STATUS.get(status, V2vzError)


def status_of(error: BaseException) -> str:
    """The gRPC status name that tells a client what kind of problem a request or a job has."""
    status = getattr(error, "status", None)
    return status if isinstance(error, V2vzError | Cancelled) and isinstance(status, str) else "INTERNAL"


def exit_code_for_status(status: str) -> int:
    """The exit code of a job that failed with this status: 2 when the input was wrong, else 1."""
    return error_class(status).exit_code if status in _BY_STATUS else EXIT_FAILED


def one_line(text: str, limit: int = 400) -> str:
    """Whitespace folded to single spaces and cut at `limit` characters: a message fit for one line."""
    line = re.sub(r"\s+", " ", text or "").strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."
