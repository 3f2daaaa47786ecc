"""Start a local Ray cluster for the daemon, or join one, always with Ray's token authentication.

A local cluster is one Ray head node on a loopback address of its own (127.0.0.2: Ray replaces 127.0.0.1 with the
machine's external address), with a token made for this daemon and no dashboard. Ray 2.60's GCS, raylet and core
workers still listen on every interface whatever the node address is (docs/cluster.md): the token is what keeps
other machines and users out, so it is never the shared ~/.ray/auth_token but one held in this process only.
Joining a cluster (`--ray ADDRESS`) needs that cluster's token file; nothing is ever sent without one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from v2vz.api.errors import ClusterUnavailable

log = logging.getLogger("v2vz.daemon")

LOCAL_NODE_IP = "127.0.0.2"  # a loopback address Ray keeps (127.0.0.1 it swaps for the external one)
NAMESPACE = "v2vz"
INSTALL_HINT = "pip install 'v2vz[cluster]'"


@dataclass(frozen=True)
class ClusterConfig:
    """How the daemon reaches its model workers: a local cluster of `workers`, or the cluster at `address`."""

    workers: int = 0  # 0: one per GPU (a local cluster), or one per free GPU of the joined cluster
    address: str | None = None  # `ray start --head`'s address, e.g. 10.0.0.5:6379; None: start a local cluster
    token_file: Path | None = None  # the joined cluster's token (`ray get-auth-token`); required with address
    device: str = "auto"  # auto: a GPU per worker where there are GPUs, else the CPU; cpu; cuda
    threads: int = 1  # torch threads per CPU worker (GPU workers ignore it)
    retries: int = 2  # a window whose worker died runs again this many times before its job fails
    node_ip: str | None = None  # this machine's Ray node address; None: 127.0.0.2 (local), Ray's choice (joining)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ClusterUnavailable(f"--workers must be 1 or more, got {self.workers}")
        if self.threads < 1:
            raise ClusterUnavailable(f"--worker-threads must be 1 or more, got {self.threads}")
        if self.retries < 0:
            raise ClusterUnavailable(f"--worker-retries must be 0 or more, got {self.retries}")
        if self.address and self.token_file is None:
            raise ClusterUnavailable(
                "joining a Ray cluster needs its token: --ray-token-file FILE (on its head: ray get-auth-token)"
            )
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ClusterUnavailable(f"a cluster's workers run on auto, cpu or cuda, not {self.device!r}")


def require_ray() -> None:
    """The one-line error that says how to install Ray, without importing it (it reads its settings at import)."""
    if importlib.util.find_spec("ray") is None:
        raise ClusterUnavailable(f"Ray is not installed: {INSTALL_HINT}")


def import_ray(token: str) -> ModuleType:
    """Ray with token authentication on and `token` as the only token it knows (set before its first import)."""
    require_ray()
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    import ray

    return ray


def read_token(path: Path) -> str:
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ClusterUnavailable(f"cannot read the Ray token file {path}: {error.strerror or error}") from None
    if not token:
        raise ClusterUnavailable(f"the Ray token file {path} is empty")
    return token


def check_cluster(address: str, token_file: Path | None) -> None:
    """Refuse in seconds an address where nothing listens or a token the cluster rejects (ray.init itself retries
    for most of a minute): one TCP connect, then one call to the cluster's GCS with the token."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailable(f"--ray {address!r} is not HOST:PORT (the head's `ray start --head --port`)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise ClusterUnavailable(f"nothing answers at {address}: {error.strerror or error}") from None
    try:
        from ray._raylet import GcsClient  # Ray's own client: one try, no retries
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray layout: ray.init says it, later
        return
    try:
        GcsClient(address=address)
    except AuthenticationError:
        raise ClusterUnavailable(
            f"the Ray cluster at {address} refused the token in {token_file}: copy it from the head "
            "(ray get-auth-token)"
        ) from None
    except Exception:  # noqa: BLE001 - any other answer: ray.init reports it in its own words
        return


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def start(config: ClusterConfig) -> ModuleType:
    """ray.init for the daemon (its driver): a local cluster, or the joined one; returns the ray module."""
    if config.address:
        ray = import_ray(read_token(config.token_file))
        check_cluster(config.address, config.token_file)
        try:
            extra = {"_node_ip_address": config.node_ip} if config.node_ip else {}
            ray.init(address=config.address, namespace=NAMESPACE, log_to_driver=False, **extra)
        except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, AuthenticationError
            raise ClusterUnavailable(f"cannot join the Ray cluster at {config.address}: {error}") from None
        return ray
    ray = import_ray(secrets.token_hex(32))  # this daemon's alone: no ~/.ray/auth_token is written
    gpus = local_gpus() if config.device != "cpu" else 0
    workers = config.workers or max(gpus, 1)
    try:
        ray.init(
            num_cpus=max(workers * (config.threads if not gpus else 1), os.cpu_count() or 1),
            num_gpus=gpus,
            include_dashboard=False,
            namespace=NAMESPACE,
            log_to_driver=False,
            _node_ip_address=config.node_ip or LOCAL_NODE_IP,
        )
    except Exception as error:  # noqa: BLE001
        raise ClusterUnavailable(f"cannot start the local Ray cluster: {error}") from None
    log.info("local Ray cluster on %s (token authentication, no dashboard)", config.node_ip or LOCAL_NODE_IP)
    return ray
