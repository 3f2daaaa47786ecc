"""What the daemon sees of its cluster: start or join it, make the workers, hand out a runner per job, stop.

Ray's driver runs in a child process (driver.py) that this class supervises: when it dies (the local raylet or GCS
died, and Ray ended it), the windows in flight run again like a dead worker's, the daemon starts a new driver (for a
local cluster: a new cluster, in a new private folder) and loads the workers there, and meanwhile keeps serving its
journal, status and cancel. If that fails it says so in one line and tries again, with a growing pause.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from v2vz.api.errors import ClusterUnavailable, V2vzError, one_line
from v2vz_daemon.cluster import connect
from v2vz_daemon.cluster.dispatch import ClusterRunner, RetryFn, WorkerPool, WorkerState
from v2vz_daemon.cluster.driver import DriverProcess, Lost

log = logging.getLogger("v2vz.daemon")

RESTART_PAUSE = (1.0, 60.0)  # seconds between two tries to bring the cluster back: first, most (doubling)


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
        self.ray: types.SimpleNamespace | None = None  # Ray is imported in the driver only: its version, here
        self.driver: DriverProcess | None = None
        self.folder: Path | None = None  # the driver's private folder: Ray's session files, the driver's log
        self.pool: WorkerPool | None = None
        self.size = 0
        self.gpu = False
        self.ready = threading.Event()
        self.error: str | None = None
        self.stopping = threading.Event()
        self._restarting = threading.Lock()
        self._spawned: list[tuple[DriverProcess, Path]] = []  # every driver not yet ended, with its folder
        self._spawned_lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="v2vz-span")

    def start(self) -> int:
        """Start or join the cluster and decide the workers (count, device); returns how many."""
        placed = self._spawn()
        self.size, self.gpu = placed["size"], placed["gpu"]
        self.ray = types.SimpleNamespace(__version__=placed["version"])
        self.pool = WorkerPool(self._plan()["names"])  # every worker `loading` until load() (or a restart)
        threading.Thread(target=self.pool.watch, name="v2vz-worker-health", daemon=True).start()
        if not self.gpu and self.config.device == "auto":
            log.warning("the Ray cluster has no GPU: %d CPU worker(s); give --device cpu to say so", self.size)
        if not self.config.address:
            node = self.config.node_ip or connect.LOCAL_NODE_IP
            log.info("local Ray cluster on %s (token authentication, no dashboard, files in %s)", node, self.folder)
        return self.size

    def _spawn(self) -> dict:
        """A new driver process in a new private folder, connected: its placement (size, gpu, Ray's version)."""
        # 0700, made here (Ray makes its own folders 0777 and /tmp/ray sticky-less: others could read the logs,
        # swap the raylet's socket or plant files); a short path, as Unix socket paths inside it are limited
        folder = Path(tempfile.mkdtemp(prefix="v2vz-ray-", dir="/tmp" if Path("/tmp").is_dir() else None))
        with self._spawned_lock:  # stop() ends every driver and removes every folder, even one still starting
            self._spawned.append((DriverProcess(folder, self._driver_died), folder))
            driver = self._spawned[-1][0]
        try:
            placed = driver.call("start", self.config, None if self.config.address else str(folder / "ray"))
            if self.stopping.is_set():
                raise ClusterUnavailable("the daemon is stopping")
        except BaseException as error:
            self._end(driver, folder)
            if isinstance(error, Lost):
                raise ClusterUnavailable(f"the Ray cluster could not be started: {error.reason}") from None
            raise
        self.driver, self.folder = driver, folder
        return placed

    def _end(self, driver: DriverProcess, folder: Path | None) -> None:
        """Stop a driver (Ray with it) and remove its folder."""
        driver.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        with self._spawned_lock:
            if (driver, folder) in self._spawned:
                self._spawned.remove((driver, folder))

    def _plan(self) -> dict:
        device = "cuda" if self.gpu else "cpu"
        inversions = str(self.inversions_dir) if self.inversions_dir else None
        return {
            "names": [f"worker-{n + 1}" for n in range(self.size)],
            "gpu": self.gpu,
            "threads": self.config.threads,
            "args": (self.model, device, str(self.cache_dir), inversions, self.cache_max_bytes, self.config.threads),
        }

    def load(self) -> bool:
        """Create the workers and load the model on each (False with `error` set when that fails)."""
        try:
            self.driver.call("make", self._plan())
            self.pool.load(self.driver)
        except Lost as error:  # the driver died while loading: its restart loads the workers (_driver_died)
            log.error("the Ray cluster died while its workers loaded: %s", error.reason)
            return False
        except Exception as error:  # noqa: BLE001 - any failure is the daemon's load error, never a silent hang
            self.error = str(error) if isinstance(error, V2vzError) else f"{type(error).__name__}: {error}"
            log.error("the cluster's workers could not be started: %s", self.error)
            return False
        for worker in self.pool.snapshot():
            log.info("%s ready: pid %d on %s, %s", worker.name, worker.pid, worker.node, worker.device)
        self.ready.set()
        return True

    def _driver_died(self, driver: DriverProcess, reason: str) -> None:
        """The driver process ended on its own (Ray ends it when the raylet or GCS dies): bring the cluster back."""
        if self.stopping.is_set() or driver is not self.driver:
            return
        log.error("the Ray cluster is gone (%s): bringing it back; its windows in flight run again", reason)
        self.ready.clear()  # no new job starts until the workers are back; status, cancel and the journal go on
        if self.pool is not None:
            self.pool.all_lost()
        threading.Thread(target=self._restart, name="v2vz-ray-restart", daemon=True).start()

    def _restart(self) -> None:
        if not self._restarting.acquire(blocking=False):  # one restart at a time: its own loop retries
            return
        try:
            pause, said = RESTART_PAUSE[0], ""
            while not self.stopping.is_set():
                old = (self.driver, self.folder)
                try:
                    self._spawn()
                    if old[0] is not None:
                        self._end(*old)  # the dead cluster's folder: logs and files of a session that is over
                    self.driver.call("make", self._plan())
                    self.pool.load(self.driver)
                except Exception as error:  # noqa: BLE001 - say why in one line, keep serving, try again
                    reason = one_line(str(error.reason if isinstance(error, Lost) else error) or repr(error))
                    if self.driver is not old[0]:  # started, but its workers could not load: end it, then retry
                        self.driver.stop()
                    if self.pool is not None:
                        self.pool.all_lost()
                        self.pool.down = f"the Ray cluster cannot be brought back: {reason}"
                    if reason != said:
                        log.error(
                            "the Ray cluster cannot be brought back: %s; the daemon keeps serving its journal, "
                            "status and cancel and tries again every %g s at most",
                            reason,
                            RESTART_PAUSE[1],
                        )
                        said = reason
                    self.stopping.wait(pause)
                    pause = min(pause * 2, RESTART_PAUSE[1])
                    continue
                self.pool.down = None
                self.ready.set()
                log.info("the Ray cluster is back: %s", self.describe())
                break
        finally:
            self._restarting.release()
        if not self.stopping.is_set() and not self.driver.alive:  # it died again before the lock was free
            self._restart()

    def runner(self, job_id: str, on_retry: RetryFn | None = None) -> ClusterRunner:
        assert self.pool is not None, "runner() before the workers are loaded"
        return ClusterRunner(self.pool, self.executor, job_id, self.config.retries, on_retry)

    def workers(self) -> list[WorkerState]:
        return self.pool.snapshot() if self.pool is not None else []

    def describe(self) -> str:
        where = f"Ray cluster at {self.config.address}" if self.config.address else "local Ray cluster"
        return f"{self.size} {'GPU' if self.gpu else 'CPU'} worker{'s' if self.size != 1 else ''} ({where})"

    def stop(self) -> None:
        self.stopping.set()
        if self.pool is not None:
            self.pool.stopping.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._spawned_lock:
            spawned = list(self._spawned)
        for driver, folder in spawned:
            self._end(driver, folder)
