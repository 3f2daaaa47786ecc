"""Errors a person can act on: each carries one line that says what is wrong and what to do.

The CLI prints them without a traceback and exits 2; the daemon maps them onto gRPC status codes.
"""

from __future__ import annotations


class V2vzError(Exception):
    """Base of every error caused by input a user can fix (never by a bug of ours)."""


class InvalidArgument(V2vzError):
    """A value is out of range or malformed (empty prompt, bad frame count, unknown option)."""


class MediaNotFound(V2vzError):
    """The source media file does not exist."""


class MediaError(V2vzError):
    """The source exists but cannot be decoded as video."""


class RangeError(InvalidArgument):
    """The requested frame range is not inside the clip."""


class ModelUnavailable(V2vzError):
    """The model cannot be found or loaded."""


class Cancelled(Exception):
    """The job was cancelled between two diffusion steps (not an error of the user)."""


class DaemonUnavailable(V2vzError):
    """No daemon is running, its endpoint file is unreadable, or it cannot be reached."""


class DaemonUnauthenticated(DaemonUnavailable):
    """The daemon refused the token of the endpoint file (it was restarted, or the file belongs to another one)."""


class JobNotFound(V2vzError):
    """The daemon knows no job of that id."""
