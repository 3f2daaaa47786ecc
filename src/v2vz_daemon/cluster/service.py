"""What the daemon sees of its cluster: start or join it, make the workers, hand out a runner per job, stop."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from v2vz.api.errors import ClusterUnavailable, V2vzError
from v2vz_daemon.cluster import connect
from v2vz_daemon.cluster.dispatch import ClusterRunner, RetryFn, WorkerPool, WorkerState, make_actor_class

log = logging.getLogger("v2vz.daemon")


class Cluster:
    """The daemon's model workers on Ray. `start` (on the main thread) connects; `load` makes the workers."""

    def __init__(
        self,
        config: connect.ClusterConfig,
        model: str,
        cache_dir: Path,
        inversions_dir: Path | None,
        cache_max_bytes: int,
    ) -> None:
        self.config = config
        self.model, self.cache_dir = model, cache_dir
        self.inversions_dir, self.cache_max_bytes = inversions_dir, cache_max_bytes
        self.ray = None
        self.pool: WorkerPool | None = None
        self.size = 0
        self.gpu = False
        self.ready = threading.Event()
        self.error: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="v2vz-span")

    def start(self) -> int:
        """Start or join the cluster and decide the workers (count, device); returns how many."""
        self.ray = connect.start(self.config)
        if self.config.address:
            gpus = float(self.ray.cluster_resources().get("GPU", 0))
        else:
            gpus = float(connect.local_gpus()) if self.config.device != "cpu" else 0.0
        if self.config.device.startswith("cuda") and gpus < 1:
            raise ClusterUnavailable("--device cuda, but the Ray cluster has no GPU: use --device cpu")
        self.gpu = self.config.device != "cpu" and gpus >= 1
        self.size = self.config.workers or (int(gpus) if self.gpu else 1)
        if not self.gpu and self.config.device == "auto":
            log.warning("the Ray cluster has no GPU: %d CPU worker(s); give --device cpu to say so", self.size)
        if self.gpu and self.size > gpus:
            raise ClusterUnavailable(f"--workers {self.size}, but the Ray cluster has {gpus:g} GPUs: one per worker")
        return self.size

    def load(self) -> bool:
        """Create the workers and load the model on each (False with `error` set when that fails)."""
        try:
            actor_class = make_actor_class(self.ray)
            gpu = {"num_gpus": 1, "num_cpus": 0}
            resources = gpu if self.gpu else {"num_gpus": 0, "num_cpus": self.config.threads}
            names = [f"worker-{n + 1}" for n in range(self.size)]
            actors = [
                actor_class.options(name=f"v2vz-{name}-{id(self):x}", scheduling_strategy="SPREAD", **resources).remote(
                    name,
                    self.model,
                    "cuda" if self.gpu else "cpu",
                    str(self.cache_dir),
                    str(self.inversions_dir) if self.inversions_dir else None,
                    self.cache_max_bytes,
                    self.config.threads,
                )
                for name in names
            ]
            self.pool = WorkerPool(self.ray, actors, names)
            self.pool.load()
        except Exception as error:  # noqa: BLE001 - any failure is the daemon's load error, never a silent hang
            self.error = str(error) if isinstance(error, V2vzError) else f"{type(error).__name__}: {error}"
            log.error("the cluster's workers could not be started: %s", self.error)
            return False
        for worker in self.pool.snapshot():
            log.info("%s ready: pid %d on %s, %s", worker.name, worker.pid, worker.node, worker.device)
        threading.Thread(target=self.pool.watch, name="v2vz-worker-health", daemon=True).start()
        self.ready.set()
        return True

    def runner(self, job_id: str, on_retry: RetryFn | None = None) -> ClusterRunner:
        assert self.pool is not None, "runner() before the workers are loaded"
        return ClusterRunner(self.pool, self.executor, job_id, self.config.retries, on_retry)

    def workers(self) -> list[WorkerState]:
        return self.pool.snapshot() if self.pool is not None else []

    def describe(self) -> str:
        where = f"Ray cluster at {self.config.address}" if self.config.address else "local Ray cluster"
        return f"{self.size} {'GPU' if self.gpu else 'CPU'} worker{'s' if self.size != 1 else ''} ({where})"

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stopping.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()
