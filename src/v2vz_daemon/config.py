"""The daemon's configuration: what `v2vz serve` was told (model, folders, address, limits, a cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from v2vz.api.endpoint import STATE_FOLDER, endpoint_path

if TYPE_CHECKING:
    from v2vz_daemon.cluster.connect import ClusterConfig


@dataclass
class DaemonConfig:
    """How the daemon runs; the servicer, admission and the life cycle all read it."""

    model: str
    cache_dir: Path
    device: str = "auto"
    listen: str | None = None  # None: a Unix socket beside the endpoint file (POSIX), else 127.0.0.1:0
    allow_remote: bool = False
    endpoint_file: Path = field(default_factory=endpoint_path)
    cache_max_bytes: int = 4 * 1024**3
    max_attempts: int = 3  # a job interrupted by this many daemon deaths is failed instead of re-queued
    rpc_threads: int = 32  # gRPC threads; an event stream holds one while it is open
    max_streams: int = 24  # open WatchJob streams at most: the other threads always answer unary calls and health
    media_roots: tuple[Path, ...] = ()  # with allow_remote: the only folders remote clients may name
    allowed_models: tuple[str, ...] = ()  # what remote clients may name besides the default model
    state_root: Path | None = None  # journal, inversions, uploads and log; None: the cache folder's `daemon`
    cluster: ClusterConfig | None = None  # None: the one in-process worker; else Ray workers (v2vz_daemon.cluster)

    @property
    def state_dir(self) -> Path:
        return self.state_root or self.cache_dir / STATE_FOLDER
