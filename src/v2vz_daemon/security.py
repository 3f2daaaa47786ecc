"""Who may talk to the daemon: the address it binds (loopback or a Unix socket in a private folder unless remote
access was asked for), the token interceptor, and the check that no other daemon already serves this endpoint."""

from __future__ import annotations

import hmac
import os
import socket
from pathlib import Path

import grpc

from v2vz.api.endpoint import previous_endpoint
from v2vz.api.errors import InvalidArgument

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
        return listen
    host = listen.rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise InvalidArgument(f"refusing to listen on {listen}: only loopback or a Unix socket without --allow-remote")
    return listen


def prepare_socket(address: str) -> None:
    """Make a Unix socket's folder private to this user and remove a stale socket file left by a dead daemon."""
    if not address.startswith("unix:"):
        return
    sock = Path(address[5:])
    sock.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(sock.parent, 0o700)
    sock.unlink(missing_ok=True)


def make_private_folder(folder: Path) -> None:
    """Create `folder` (and its parents) and make it readable by this user only (POSIX)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(folder, 0o700)


def refuse_second_daemon(endpoint_file: Path) -> None:
    """InvalidArgument when the endpoint file names another daemon that is alive and answers on its address."""
    previous = previous_endpoint(endpoint_file)
    if previous is None:
        return
    pid = previous.get("pid")
    if pid and pid != os.getpid() and _pid_alive(pid) and _reachable(str(previous.get("address", ""))):
        raise InvalidArgument(f"a v2vz daemon is already running (pid {pid}, {previous.get('address')})")


class TokenInterceptor(grpc.ServerInterceptor):
    """Every call but the health check must carry `authorization: Bearer <token>` from the endpoint file."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(HEALTH_PREFIX):
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
