"""Placing spans on the cluster's workers: a pool of actors, and the SpanRunner a job's plan runs on.

Each span runs on a thread of the daemon that waits for a free worker, sends the span, forwards the worker's
progress every POLL seconds and flags its cancel when the job is cancelled. A worker that dies (its process killed,
its node gone) fails the span with one of Ray's actor errors: the span runs again from its first step on the next
free worker (Ray restarts the dead actor meanwhile), up to `retries` times. Its frames were never written, because
the front end writes a span's frames only from a finished result: none comes twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from types import ModuleType

from v2vz.api.errors import Cancelled, WorkerLost
from v2vz_daemon.cluster.worker_actor import SPAN_SECONDS
from v2vz_engine.run import WorkerFacts
from v2vz_engine.spans import ANCHOR_PASS, SpanResult, SpanTask

log = logging.getLogger("v2vz.daemon")

POLL = 0.05  # seconds between two progress drains of a running span
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
    """The cluster's model workers and which of them are free; every worker holds the same default model."""

    def __init__(self, ray: ModuleType, actors: list, names: list[str]) -> None:
        self.ray = ray
        self.actors = dict(zip(names, actors, strict=True))
        self.states = {name: WorkerState(name) for name in names}
        self._changed = threading.Condition()
        self._facts: dict[str, WorkerFacts] = {}
        self.stopping = threading.Event()

    @property
    def size(self) -> int:
        return len(self.actors)

    def load(self) -> None:
        """Wait until every worker has its model; the first failure is the daemon's load error."""
        refs = {name: actor.load.remote() for name, actor in self.actors.items()}
        for name, ref in refs.items():
            self._update(name, self._get(ref), "idle")

    def _get(self, ref):
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            raise _cause(error) from None

    def _update(self, name: str, described: dict, state: str) -> None:
        with self._changed:
            worker = self.states[name]
            worker.node, worker.device, worker.pid = described["node"], described["device"], described["pid"]
            worker.dtype = described.get("dtype", "")
            worker.state, worker.job_id, worker.window, worker.stage = state, "", 0, ""
            self._changed.notify_all()

    def acquire(self, job_id: str, window: int, cancel: Callable[[], bool] | None) -> str:
        """The name of a free worker, now marked busy with the span; Cancelled when the job is while it waits."""
        with self._changed:
            while True:
                if cancel and cancel():
                    raise Cancelled("cancelled while waiting for a free worker")
                for name, worker in self.states.items():
                    if worker.state == "idle":
                        worker.state, worker.job_id, worker.window, worker.stage = "busy", job_id, window, "sending"
                        return name
                self._changed.wait(POLL * 4)

    def note(self, name: str, stage: str) -> None:
        self.states[name].stage = stage

    def release(self, name: str, died: bool = False) -> None:
        """The worker is free again; a dead one rejoins (on a thread) once Ray has restarted it."""
        if not died:
            with self._changed:
                worker = self.states[name]
                worker.state, worker.job_id, worker.window, worker.stage = "idle", "", 0, ""
                self._changed.notify_all()
            return
        with self._changed:
            worker = self.states[name]
            if worker.state == "restarting":
                return
            worker.state, worker.job_id, worker.window, worker.stage = "restarting", "", 0, ""
        threading.Thread(target=self._rejoin, args=(name,), name=f"v2vz-rejoin-{name}", daemon=True).start()

    def _rejoin(self, name: str) -> None:
        """Wait for Ray to restart the worker (on its node, or elsewhere if the node is gone) and load its model."""
        waited = 0.0
        while not self.stopping.is_set():
            try:
                described = self.ray.get(self.actors[name].load.remote(), timeout=300)
            except Exception as error:  # noqa: BLE001 - still restarting, or no free resources for it yet
                if waited % 60 == 0:
                    log.info("worker %s is not back yet (%s): Ray restarts it once a node has room", name, error)
                self.stopping.wait(REJOIN_POLL)
                waited += REJOIN_POLL
                continue
            log.info("worker %s is back (pid %s on %s)", name, described["pid"], described["node"])
            self._update(name, described, "idle")
            return

    def watch(self) -> None:
        """Until `stopping`: ask each idle worker every HEALTH_POLL seconds whether it lives, so that `v2vz status`
        shows a worker whose process or node died even when no job needed it (it rejoins once Ray restarts it)."""
        while not self.stopping.wait(HEALTH_POLL):
            idle = [worker.name for worker in self.snapshot() if worker.state == "idle"]
            for name in idle:
                try:
                    described = self.ray.get(self.actors[name].describe.remote(), timeout=HEALTH_POLL * 2)
                except Exception as error:  # noqa: BLE001 - the actor died (or hangs): the same for a user
                    log.warning("worker %s does not answer (%s): waiting for it to come back", name, error)
                    self.release(name, died=True)
                    continue
                with self._changed:
                    worker = self.states[name]
                    if worker.state == "idle" and worker.pid != described["pid"]:  # restarted between two jobs
                        worker.pid, worker.node = described["pid"], described["node"]

    def facts(self, model: str, cancel: Callable[[], bool] | None) -> WorkerFacts:
        """The device facts planning needs, asked of a free worker once per model (the workers are alike)."""
        if model not in self._facts:
            name = self.acquire("", 0, cancel)
            try:
                self._facts[model] = self._get(self.actors[name].facts.remote(model))
            finally:
                self.release(name)
        return self._facts[model]

    def snapshot(self) -> list[WorkerState]:
        with self._changed:
            return [WorkerState(**worker.view()) for worker in self.states.values()]


def _cause(error: Exception) -> BaseException:
    """The exception a task raised (ours keep their class and one-line message through Ray)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


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
        self._anchor_refs: dict[int, tuple[object, object]] = {}  # id(tensor): (tensor, its object ref)

    def facts(self, model: str) -> WorkerFacts:
        return self.pool.facts(model, None)

    def submit(self, task: SpanTask, anchors, progress, cancel) -> Future[SpanResult]:
        ref = None
        if anchors is not None:  # the anchors of an anchored job go to the object store once, for every window
            held = self._anchor_refs.get(id(anchors))
            if held is None or held[0] is not anchors:
                held = self._anchor_refs[id(anchors)] = (anchors, self.pool.ray.put(anchors))
            ref = held[1]
        return self.executor.submit(self._run, task, ref, progress, cancel)

    def _run(self, task: SpanTask, anchors, progress, cancel) -> SpanResult:
        ray, pool = self.pool.ray, self.pool
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        window = 0 if task.window == ANCHOR_PASS else task.window + 1
        for attempt in range(self.retries + 1):
            name = pool.acquire(self.job_id, window, cancel)
            actor, task_id, died = pool.actors[name], uuid.uuid4().hex, False
            try:
                sent = time.perf_counter()
                result = self._follow(actor, name, actor.edit.remote(task_id, task, anchors), task_id, progress, cancel)
                # what the cluster costs a span: its round trip less its edit in the worker (transfers, the actor
                # call, progress polling); the job's `dispatch` timing sums it over the spans
                result.timings["dispatch"] = time.perf_counter() - sent - result.timings.pop(SPAN_SECONDS, 0.0)
                return result
            except lost as error:
                died = True
                reason = f"worker {name} (pid {pool.states[name].pid} on {pool.states[name].node}) died: " + (
                    str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                )
                log.warning("job %s, %s: %s", self.job_id, task.label, reason)
                if cancel and cancel():
                    raise Cancelled(f"cancelled during {task.label}") from None
                if attempt == self.retries:
                    tries = f"{attempt} retr{'y' if attempt == 1 else 'ies'} (--worker-retries {self.retries})"
                    raise WorkerLost(f"{task.label}: gave up after {tries}; {reason}") from None
                if self.on_retry:
                    self.on_retry(task, attempt + 1, self.retries, reason)
            finally:
                pool.release(name, died=died)
        raise AssertionError("unreachable")

    def _follow(self, actor, name: str, ref, task_id: str, progress, cancel) -> SpanResult:
        """Forward the span's progress until it is done; flag its cancel once the job is cancelled."""
        ray, flagged = self.pool.ray, False
        while True:
            ready, _ = ray.wait([ref], timeout=POLL)
            for stage, step, total, cached in ray.get(actor.drain.remote(task_id, final=bool(ready))):
                self.pool.note(name, f"{stage} {step}/{total}")
                if progress:
                    progress(stage, step, total, cached)
            if ready:
                try:
                    return ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # what the span raised, as the embedded worker sees it
                    raise _cause(error) from None
            if not flagged and cancel and cancel():
                actor.cancel.remote(task_id)
                flagged = True


def make_actor_class(ray: ModuleType):
    """EditWorker as a Ray actor: restarted whenever it dies, its in-flight calls failed (the runner retries)."""
    from v2vz_daemon.cluster.worker_actor import EditWorker

    return ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=4)(EditWorker)
