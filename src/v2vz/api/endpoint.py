"""The endpoint file: how a client finds the daemon (its gRPC address) and proves it may talk to it (the token).

The daemon writes it when it starts and removes it when it stops; clients read it before every connection. It is
private to the user (0600 in a folder only the user can open), since the token is the only credential.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from v2vz.api.errors import DaemonUnavailable, one_line
from v2vz.api.files import write_atomic

START_HINT = "start one with `v2vz serve`"  # `v2vz edit` adds its `--local`: no other command has one
STATE_FOLDER = "daemon"  # the daemon's state inside the cache folder: journal, inversions, uploads, log
DAEMON_LOG_NAME = "daemon.log"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where built-in models and the daemon's state live: --cache-dir, $V2VZ_CACHE, or ~/.cache/v2vz."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("V2VZ_CACHE") or Path.home() / ".cache" / "v2vz").expanduser()


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
    log_file: str | None = None  # the daemon's log (`v2vz logs` reads it)


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
    fix = "restart `v2vz serve` (it rewrites the file)"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonUnavailable(f"{broken} (not JSON: {one_line(str(exc))}): {fix}") from None
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
    version, log_file = data.get("version"), data.get("log")
    return Endpoint(
        address=data["address"].strip(),
        token=data["token"].strip(),
        pid=pid,
        version=version if isinstance(version, str) else None,
        log_file=log_file if isinstance(log_file, str) else None,
    )


def write_endpoint(path: Path, endpoint: Endpoint) -> None:
    """Write the endpoint file atomically, readable by its user only (it holds the token)."""
    data = {"address": endpoint.address, "token": endpoint.token, "pid": endpoint.pid, "version": endpoint.version}
    if endpoint.log_file:
        data["log"] = endpoint.log_file
    write_atomic(path, json.dumps(data), mode=0o600)


def previous_endpoint(path: Path) -> dict | None:
    """What an endpoint file holds, without checks (None when there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_endpoint_if_mine(path: Path, token: str) -> bool:
    """Remove the endpoint file if it still holds `token` (a newer daemon's file is left alone); True if removed."""
    data = previous_endpoint(path)
    if data is None or data.get("token") != token:
        return False
    try:
        path.unlink()
    except OSError:
        return False
    return True
