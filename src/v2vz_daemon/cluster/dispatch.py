"""Placing spans on the cluster's workers: a pool of actors, and the SpanRunner a job's plan runs on.

Each span runs on a thread of the daemon that waits for a free worker and sends the span to the Ray driver process
(driver.py), which forwards the worker's progress every few tens of milliseconds and flags its cancel when the job
is cancelled. A worker that dies (its process killed, its node gone) or the driver process itself (the local
raylet or GCS gone) fails the span with Lost: the span runs again from its first step on the next free worker (Ray
restarts a dead actor; the daemon a dead driver and its workers), up to `retries` times. Its frames were never
written, because the front end writes a span's frames only from a finished result: none comes twice."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from v2vz.api.errors import Cancelled, WorkerLost, one_line
from v2vz_daemon.cluster.driver import DriverProcess, Lost
from v2vz_daemon.cluster.worker_actor import SPAN_SECONDS
from v2vz_engine.run import DeviceFacts
from v2vz_engine.spans import ANCHOR_PASS, SpanResult, SpanTask

log = logging.getLogger("v2vz.daemon")

POLL = 0.05  # seconds between two looks at the free workers (x4) while a span waits for one
HEALTH_POLL = 5.0  # seconds between two checks that the idle workers live
REJOIN_POLL = 2.0  # seconds between two attempts to reach a worker Ray is restarting
RetryFn = Callable[[SpanTask, int, int, str], None]  # (task, retry, most retries, reason)


@dataclass
class WorkerState:
    """What `v2vz status` shows of one worker; `state` is loading, idle, busy or restarting."""

    name: str
    node: str = ""
    device: str = ""
    dtype: str = ""
    pid: int = 0
    state: str = "loading"
    job_id: str = ""
    window: int = 0  # the span's window, 1-based; 0: the anchor pass, or no job
    stage: str = ""  # e.g. "edit 12/50"

    def view(self) -> dict:
        return asdict(self)


class WorkerPool:
    """The cluster's model workers and which of them are free; every worker holds the same default model.

    The workers live in `driver`'s Ray session; when that driver process dies the daemon starts a new one and
    `load`s the workers there again (service.Cluster), meanwhile every worker shows `restarting`.
    """

    def __init__(self, names: list[str]) -> None:
        self.driver: DriverProcess | None = None
        self.states = {name: WorkerState(name) for name in names}
        self._changed = threading.Condition()
        self._facts: dict[str, DeviceFacts] = {}
        self.stopping = threading.Event()
        self.down: str | None = None  # why the cluster cannot be brought back: spans waiting for a worker fail

    @property
    def size(self) -> int:
        return len(self.states)

    def load(self, driver: DriverProcess) -> None:
        """Load the model on every worker of `driver` (at once); the first failure is raised."""
        with self._changed:
            self.driver = driver
        names = list(self.states)
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="v2vz-load") as loading:
            answers = [loading.submit(driver.call, "load", name) for name in names]
            for name, answer in zip(names, answers, strict=True):
                self._update(name, answer.result(), "idle")

    def _update(self, name: str, described: dict, state: str) -> None:
        with self._changed:
            worker = self.states[name]
            worker.node, worker.device, worker.pid = described["node"], described["device"], described["pid"]
            worker.dtype = described.get("dtype", "")
            worker.state, worker.job_id, worker.window, worker.stage = state, "", 0, ""
            self._changed.notify_all()

    def all_lost(self) -> None:
        """The driver died: every worker with it (the running spans fail with Lost and run again later)."""
        with self._changed:
            self.driver = None
            for worker in self.states.values():
                worker.state, worker.job_id, worker.window, worker.stage = "restarting", "", 0, ""
            self._changed.notify_all()

    def acquire(self, job_id: str, window: int, cancel: Callable[[], bool] | None) -> str:
        """The name of a free worker, now marked busy with the span; Cancelled when the job is while it waits,
        WorkerLost when the cluster is down and could not be brought back."""
        with self._changed:
            while True:
                if cancel and cancel():
                    raise Cancelled("cancelled while waiting for a free worker")
                if self.down:
                    raise WorkerLost(f"no worker: {self.down}")
                for name, worker in self.states.items():
                    if worker.state == "idle":
                        worker.state, worker.job_id, worker.window, worker.stage = "busy", job_id, window, "sending"
                        return name
                self._changed.wait(POLL * 4)

    def note(self, name: str, stage: str) -> None:
        self.states[name].stage = stage

    def release(self, name: str, died: bool = False, driver: DriverProcess | None = None) -> None:
        """The worker is free again; a dead one rejoins (on a thread) once Ray has restarted it. A worker of a
        driver that is gone is the new driver's business (it loads every worker again)."""
        with self._changed:
            if driver is not None and driver is not self.driver:
                return
            worker = self.states[name]
            if not died:
                worker.state, worker.job_id, worker.window, worker.stage = "idle", "", 0, ""
                self._changed.notify_all()
                return
            if worker.state == "restarting":
                return
            worker.state, worker.job_id, worker.window, worker.stage = "restarting", "", 0, ""
            driver = self.driver
        threading.Thread(target=self._rejoin, args=(name, driver), name=f"v2vz-rejoin-{name}", daemon=True).start()

    def _rejoin(self, name: str, driver: DriverProcess | None) -> None:
        """Wait for Ray to restart the worker (on its node, or elsewhere if the node is gone) and load its model."""
        waited = 0.0
        while not self.stopping.is_set() and driver is not None and driver is self.driver:
            try:
                described = driver.call("load", name, 300.0, timeout=330.0)
            except Exception as error:  # noqa: BLE001 - still restarting, or no free resources for it yet
                if waited % 60 == 0:
                    log.info(
                        "worker %s is not back yet (%s): Ray restarts it once a node has room",
                        name,
                        one_line(str(error)),
                    )
                self.stopping.wait(REJOIN_POLL)
                waited += REJOIN_POLL
                continue
            with self._changed:
                if driver is not self.driver:
                    return
            log.info("worker %s is back (pid %s on %s)", name, described["pid"], described["node"])
            self._update(name, described, "idle")
            return

    def watch(self) -> None:
        """Until `stopping`: ask each idle worker every HEALTH_POLL seconds whether it lives, so that `v2vz status`
        shows a worker whose process or node died even when no job needed it (it rejoins once Ray restarts it)."""
        while not self.stopping.wait(HEALTH_POLL):
            driver = self.driver
            if driver is None:
                continue
            idle = [worker.name for worker in self.snapshot() if worker.state == "idle"]
            for name in idle:
                try:
                    described = driver.call("describe", name, HEALTH_POLL * 2, timeout=HEALTH_POLL * 2 + 5)
                except Exception as error:  # noqa: BLE001 - the actor died (or hangs): the same for a user
                    if driver is self.driver and driver.alive:
                        why = one_line(str(error)) or type(error).__name__
                        log.warning("worker %s does not answer (%s): waiting for it to come back", name, why)
                        self.release(name, died=True, driver=driver)
                    continue
                with self._changed:
                    worker = self.states[name]
                    if worker.state == "idle" and worker.pid != described["pid"]:  # restarted between two jobs
                        worker.pid, worker.node = described["pid"], described["node"]

    def facts(self, model: str, cancel: Callable[[], bool] | None) -> DeviceFacts:
        """The device facts planning needs, asked of a free worker once per model (the workers are alike)."""
        while model not in self._facts:
            name = self.acquire("", 0, cancel)
            driver, died = self.driver, False
            try:
                if driver is not None:
                    self._facts[model] = driver.call("facts", name, model)
            except Lost:  # its worker (or the driver) died: ask the next free one
                died = True
            finally:
                self.release(name, died=died, driver=driver)
        return self._facts[model]

    def snapshot(self) -> list[WorkerState]:
        with self._changed:
            return [WorkerState(**worker.view()) for worker in self.states.values()]


class ClusterRunner:
    """A job's spans on the pool: at most one worker per span, as many spans at once as there are workers."""

    def __init__(
        self,
        pool: WorkerPool,
        executor: ThreadPoolExecutor,
        job_id: str,
        retries: int,
        on_retry: RetryFn | None = None,
    ) -> None:
        self.pool, self.executor, self.job_id = pool, executor, job_id
        self.retries, self.on_retry = retries, on_retry
        self.capacity = pool.size
        self._anchors: dict[int, list] = {}  # id(tensor): [tensor, its key in the driver, the driver's generation]
        self._anchors_lock = threading.Lock()

    def facts(self, model: str) -> DeviceFacts:
        return self.pool.facts(model, None)

    def submit(self, task: SpanTask, anchors, progress, cancel) -> Future[SpanResult]:
        return self.executor.submit(self._run, task, anchors, progress, cancel)

    def _anchors_in(self, driver: DriverProcess, anchors) -> str | None:
        """The key of the job's anchors in the driver's object store: sent once per job (and per driver)."""
        if anchors is None:
            return None
        with self._anchors_lock:
            held = self._anchors.get(id(anchors))
            if held is None or held[0] is not anchors:
                held = self._anchors[id(anchors)] = [anchors, f"{self.job_id}-{uuid.uuid4().hex[:8]}", 0]
            if held[2] != driver.generation:
                driver.call("put", held[1], anchors)
                held[2] = driver.generation
            return held[1]

    def _run(self, task: SpanTask, anchors, progress, cancel) -> SpanResult:
        pool = self.pool
        window = 0 if task.window == ANCHOR_PASS else task.window + 1
        for attempt in range(self.retries + 1):
            name = pool.acquire(self.job_id, window, cancel)
            driver, died = pool.driver, False

            def forward(event: tuple, name: str = name) -> None:
                stage, step, total, cached = event
                pool.note(name, f"{stage} {step}/{total}")
                if progress:
                    progress(stage, step, total, cached)

            try:
                if driver is None:
                    raise Lost("the Ray cluster is restarting")
                key = self._anchors_in(driver, anchors)
                sent = time.perf_counter()
                result = driver.call("edit", name, task, key, progress=forward, cancel=cancel)
                # what the cluster costs a span: its round trip less its edit in the worker (transfers, the actor
                # call, progress polling); the job's `dispatch` timing sums it over the spans
                result.timings["dispatch"] = time.perf_counter() - sent - result.timings.pop(SPAN_SECONDS, 0.0)
                return result
            except Lost as error:
                died = True
                state = pool.states[name]
                reason = f"worker {name} (pid {state.pid} on {state.node}) died: {error.reason}"
                log.warning("job %s, %s: %s", self.job_id, task.label, reason)
                if cancel and cancel():
                    raise Cancelled(f"cancelled during {task.label}") from None
                if attempt == self.retries:
                    tries = f"{attempt} retr{'y' if attempt == 1 else 'ies'} (--worker-retries {self.retries})"
                    raise WorkerLost(f"{task.label}: gave up after {tries}; {reason}") from None
                if self.on_retry:
                    self.on_retry(task, attempt + 1, self.retries, reason)
            finally:
                pool.release(name, died=died, driver=driver)
        raise AssertionError("unreachable")
