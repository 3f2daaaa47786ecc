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
import stat
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from v2vz.api.errors import ClusterUnavailable

log = logging.getLogger("v2vz.daemon")

LOCAL_NODE_IP = "127.0.0.2"  # a loopback address Ray keeps (127.0.0.1 it swaps for the external one)
NAMESPACE = "v2vz"
INSTALL_HINT = "pip install 'v2vz[cluster]'"
LOCAL_GCS_RECONNECT_S = 5  # seconds a local cluster's processes wait for a dead GCS (Ray's default: 60)
TOKEN_MAX_BYTES = 4096  # a Ray token is 64 hex digits: anything much longer is not one
MAX_WORKER_THREADS = 1024  # torch threads of one CPU worker: more than any machine's cores


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
        if self.threads > MAX_WORKER_THREADS:  # 100000 torch threads per worker exhaust the process
            raise ClusterUnavailable(f"--worker-threads must be at most {MAX_WORKER_THREADS}, got {self.threads}")
        if self.retries < 0:
            raise ClusterUnavailable(f"--worker-retries must be 0 or more, got {self.retries}")
        if self.address and self.token_file is None:
            raise ClusterUnavailable(
                "joining a Ray cluster needs its token: --ray-token-file FILE (on its head: ray get-auth-token)"
            )
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ClusterUnavailable(f"a cluster's workers run on auto, cpu or cuda, not {self.device!r}")
        if self.token_file is not None and not self.address:
            raise ClusterUnavailable(
                "--ray-token-file goes with --ray ADDRESS: a local cluster (--workers) makes a token of its own"
            )
        if not self.address and self.workers and (self.device == "cpu" or not _gpu_devices()):
            problem = too_many_workers(self.workers, 0.0, machine_cpus(), "this machine")
            if problem:  # refused now, before Ray starts (a GPU machine's count is checked once torch is up)
                raise ClusterUnavailable(problem)


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
    """The token in `path`: a private regular file of at most TOKEN_MAX_BYTES (a FIFO, a device or a file others
    can read is refused in one line, never waited on, read without end, or used)."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise ClusterUnavailable(f"cannot read the Ray token file {path}: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ClusterUnavailable(f"the Ray token file {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ClusterUnavailable(
                f"the Ray token file {path} is open to others (mode {info.st_mode & 0o777:o}): chmod 600 {path}"
            )
        if info.st_size > TOKEN_MAX_BYTES:
            raise ClusterUnavailable(
                f"the Ray token file {path} is {info.st_size} bytes: a token is one line (ray get-auth-token)"
            )
        data = os.read(fd, TOKEN_MAX_BYTES + 1)
    except OSError as error:
        raise ClusterUnavailable(f"cannot read the Ray token file {path}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    try:
        token = data[:TOKEN_MAX_BYTES].decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ClusterUnavailable(f"the Ray token file {path} is not text: a token is one line") from None
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


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def too_many_workers(workers: int, gpus: float, cpus: float, where: str) -> str | None:
    """Why `workers` does not fit: one GPU per GPU worker, at least one CPU per CPU worker (None when it fits)."""
    if gpus >= 1 and workers > gpus:
        return f"--workers {workers}, but {where} has {gpus:g} GPU{'s' if gpus != 1 else ''}: one per worker"
    if gpus < 1 and workers > cpus:
        return (
            f"--workers {workers}, but {where} has {cpus:g} CPU{'s' if cpus != 1 else ''}: "
            "at most one CPU worker per CPU"
        )
    return None


def _gpu_devices() -> bool:
    """Whether this machine may have a GPU torch can use (NVIDIA's or AMD's device files), without importing it."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/kfd").exists()


def placement(ray: ModuleType, config: ClusterConfig) -> dict:
    """How many workers, on GPUs or CPUs, in the cluster `ray` is connected to (ClusterUnavailable if none fit)."""
    if config.address:
        resources = ray.cluster_resources()
        gpus, cpus, where = float(resources.get("GPU", 0)), float(resources.get("CPU", 0)), "the Ray cluster"
    else:
        gpus, cpus, where = float(local_gpus()) if config.device != "cpu" else 0.0, machine_cpus(), "this machine"
    if config.device.startswith("cuda") and gpus < 1:
        raise ClusterUnavailable("--device cuda, but the Ray cluster has no GPU: use --device cpu")
    gpu = config.device != "cpu" and gpus >= 1
    size = config.workers or (int(gpus) if gpu else 1)
    problem = too_many_workers(size, gpus if gpu else 0.0, cpus, where)
    if problem:
        raise ClusterUnavailable(problem)
    return {"size": size, "gpu": gpu, "version": ray.__version__}


def start(config: ClusterConfig, temp_dir: str | None = None) -> ModuleType:
    """ray.init for the daemon's driver process (cluster/driver.py): a local cluster whose session files are in
    `temp_dir` (a private folder), or the joined one; returns the ray module."""
    if config.address:
        ray = import_ray(read_token(config.token_file))
        check_cluster(config.address, config.token_file)
        try:
            extra = {"_node_ip_address": config.node_ip} if config.node_ip else {}
            ray.init(address=config.address, namespace=NAMESPACE, log_to_driver=False, **extra)
        except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, AuthenticationError
            raise ClusterUnavailable(f"cannot join the Ray cluster at {config.address}: {error}") from None
        return ray
    gpus = local_gpus() if config.device != "cpu" else 0
    workers = config.workers or max(gpus, 1)
    problem = too_many_workers(workers, gpus, machine_cpus(), "this machine")
    if problem:  # before ray.init: Ray would make room for any number of CPU workers
        raise ClusterUnavailable(problem)
    # A local GCS never comes back once dead (no Redis behind it): let Ray give up in seconds, not a minute, so that
    # the daemon starts a new cluster at once (the driver process ends; cluster/driver.py)
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(LOCAL_GCS_RECONNECT_S))
    ray = import_ray(secrets.token_hex(32))  # this daemon's alone: no ~/.ray/auth_token is written
    try:
        ray.init(
            num_cpus=max(workers * (config.threads if not gpus else 1), machine_cpus()),
            num_gpus=gpus,
            include_dashboard=False,
            namespace=NAMESPACE,
            log_to_driver=False,
            _node_ip_address=config.node_ip or LOCAL_NODE_IP,
            _temp_dir=temp_dir,
        )
    except Exception as error:  # noqa: BLE001
        raise ClusterUnavailable(f"cannot start the local Ray cluster: {error}") from None
    return ray
