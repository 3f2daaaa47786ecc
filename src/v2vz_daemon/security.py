"""Who may talk to the daemon: the address it binds (loopback or a Unix socket in a private folder unless remote
access was asked for), the token interceptor, the check that no other daemon already serves this endpoint, and the
lock that gives a state folder to one daemon at a time."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import socket
from pathlib import Path

import grpc

from v2vz.api.endpoint import previous_endpoint
from v2vz.api.errors import InvalidArgument, PathNotAllowed

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
HEALTH_PREFIX = "/grpc.health.v1.Health/"  # the one service open without a token (load balancers, `grpc_health_probe`)


def resolve_listen(listen: str | None, endpoint_file: Path, allow_remote: bool) -> str:
    """The address to bind: refuse anything but loopback or a Unix socket unless remote access was asked for.

    None: a Unix socket beside the endpoint file (POSIX), else 127.0.0.1 on a free port.
    """
    if listen is None:
        if os.name == "posix":
            return f"unix:{endpoint_file.parent / 'daemon.sock'}"
        return "127.0.0.1:0"
    if listen.startswith("unix:"):
        path = listen[5:].removeprefix("//")  # unix:///abs/path is unix:/abs/path
        if not path:
            raise InvalidArgument(f"--listen {listen} names no socket path: give unix:/path/to/daemon.sock")
        # Relative to where `v2vz serve` was started, written absolute: clients elsewhere must find the same socket.
        return f"unix:{os.path.abspath(os.path.expanduser(path))}"
    host = listen.rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise InvalidArgument(f"refusing to listen on {listen}: only loopback or a Unix socket without --allow-remote")
    return listen


def prepare_socket(address: str) -> None:
    """A Unix socket's folder must be private to this user; a stale socket file left by a dead daemon goes."""
    if not address.startswith("unix:"):
        return
    sock = Path(address[5:])
    private_folder(sock.parent)
    sock.unlink(missing_ok=True)


def private_folder(folder: Path) -> None:
    """A folder only this user can open: created so (0700) when it does not exist, refused when it exists and is not.

    A folder the daemon did not create is never changed (`--listen unix:/tmp/x.sock` must not close /tmp).
    """
    if os.name != "posix":
        folder.mkdir(parents=True, exist_ok=True)
        return
    if not folder.exists():
        _make_folders(folder)
        return
    info = folder.stat()
    if not folder.is_dir():
        raise InvalidArgument(f"{folder} is not a folder: the daemon's socket and endpoint file need one")
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        owner = "another user's" if info.st_uid != os.geteuid() else f"open to others (mode {info.st_mode & 0o7777:o})"
        raise InvalidArgument(
            f"{folder} is {owner}: the daemon's socket and endpoint file go in a folder only you can open; "
            f"choose another (e.g. a new folder) or `chmod 700 {folder}` if it is yours"
        )


def own_private_folder(folder: Path) -> None:
    """The daemon's own state folder: created private, or made private again if an older daemon left it open.

    InvalidArgument in one line when it cannot be: a file in its place or above it, no right to make it."""
    try:
        if not folder.exists():
            _make_folders(folder)
        elif not folder.is_dir():  # a file of the user's: never chmod it
            raise NotADirectoryError(20, "a file is in the way")
        elif os.name == "posix" and folder.stat().st_uid == os.geteuid():
            os.chmod(folder, 0o700)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot use {folder} as the daemon's state folder ({exc.strerror or exc}): give --state-dir a folder "
            "you can write"
        ) from None


def _make_folders(folder: Path) -> None:
    """Create `folder` 0700; the parents it needs get the usual mode (a shared cache root stays readable)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    if os.name == "posix":
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def refuse_second_daemon(endpoint_file: Path) -> None:
    """InvalidArgument when the endpoint file names another daemon that is alive and answers on its address."""
    previous = previous_endpoint(endpoint_file)
    if previous is None:
        return
    pid = previous.get("pid")
    if pid and pid != os.getpid() and _pid_alive(pid) and _reachable(str(previous.get("address", ""))):
        raise InvalidArgument(f"a v2vz daemon is already running (pid {pid}, {previous.get('address')})")


LOCK_NAME = "daemon.lock"


class StateLock:
    """The state folder held by one daemon for its whole life: an OS lock on `daemon.lock` in it.

    Why a lock and not a pid file: the OS drops it when the holder dies however it dies (SIGKILL, out of memory), so
    it is never stale, and two daemons starting at the same moment cannot both take it. Without it a second daemon
    on the same folder sweeps the first one's partial files as "interrupted" and runs its running job again. The
    file says who holds it (pid and address) for the refusal's one line; its content is never what decides.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or InvalidArgument at once naming the daemon that holds it (never waits)."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot use {self.folder} as the daemon's state folder ({exc.strerror or exc}): "
                "give --state-dir a folder you can write"
            ) from None
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            pid = holder.get("pid") or "unknown"
            address = holder.get("address") or "still starting"
            raise InvalidArgument(
                f"a v2vz daemon is already running on the state folder {self.folder} (pid {pid}, {address}): "
                "stop it first, or give this one another --state-dir"
            )
        self._fd = fd
        self.record("")

    def record(self, address: str) -> None:
        """Write this daemon's pid and address into the lock file (what a refused second daemon names)."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "address": address}).encode()
        with contextlib.suppress(OSError):  # the record is a courtesy: the lock itself is what counts
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)

    def release(self) -> None:
        """Let the folder go (the file stays: removing it would let two daemons lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _try_lock(fd: int) -> bool:
    """An exclusive lock on the open file without waiting: flock on POSIX, msvcrt's byte lock on Windows."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_holder(fd: int) -> dict:
    """What the holder of the lock wrote about itself; {} while it has not written yet."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def confine(path: str, roots: tuple[Path, ...], what: str) -> None:
    """PathNotAllowed unless `path` lies inside one of `roots` once every link is followed, with no `..` in it.

    For a path that does not exist yet (an output), its nearest existing folder decides.
    """
    given = Path(path)
    if ".." in given.parts:
        raise PathNotAllowed(f"the {what} {path!r} has a '..' in it: remote clients name paths inside --media-root")
    existing, rest = given, []
    while not existing.exists() and existing != existing.parent:
        rest.append(existing.name)
        existing = existing.parent
    real = Path(os.path.realpath(existing)).joinpath(*reversed(rest))
    for root in roots:
        if real == Path(os.path.realpath(root)) or Path(os.path.realpath(root)) in real.parents:
            return
    where = ", ".join(str(root) for root in roots) or "none: upload the media and stream the frames instead"
    raise PathNotAllowed(f"the {what} {path!r} is outside the folders this daemon opens to remote clients ({where})")


class TokenInterceptor(grpc.ServerInterceptor):
    """Every call but the health check must carry `authorization: Bearer <token>` from the endpoint file; a request
    that does not parse as its message is refused as INVALID_ARGUMENT (gRPC itself would answer INTERNAL)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return _parsing_safely(handler)
        return _refusing(handler)


class _Malformed:
    """What a request that does not parse becomes, so the call can refuse it with its own status."""


_MALFORMED = _Malformed()
_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _parsing_safely(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler with a deserializer that cannot raise, and a behaviour that refuses what did not parse."""
    parse = handler.request_deserializer

    def deserialize(data: bytes):
        try:
            return parse(data)
        except Exception:  # noqa: BLE001 - any decoding error means the same to the client
            return _MALFORMED

    def refuse(context) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid v2vz.v1 message")

    behaviour = next(
        getattr(handler, name)
        for name in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        if getattr(handler, name) is not None
    )

    if handler.request_streaming:

        def run(requests, context):
            def checked():
                for request in requests:
                    if request is _MALFORMED:
                        refuse(context)
                    yield request

            return behaviour(checked(), context)

    else:

        def run(request, context):
            if request is _MALFORMED:
                refuse(context)
            return behaviour(request, context)

    make = _KINDS[(handler.request_streaming, handler.response_streaming)]
    return make(run, deserialize, handler.response_serializer)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def deny(request, context):
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong token: read it from the daemon's endpoint file (v2vz finds it by itself)",
        )

    make = _KINDS[(handler.request_streaming, handler.response_streaming)]
    return make(deny, handler.request_deserializer, handler.response_serializer)


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
