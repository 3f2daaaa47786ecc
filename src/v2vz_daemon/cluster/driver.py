"""The daemon's Ray driver, in a child process the daemon supervises.

Why a child: Ray's core worker ends the process it lives in when the local raylet dies (at once) or the GCS stays
unreachable (after `gcs_rpc_server_reconnect_timeout_s`); it calls exit/abort from C++, so no Python code can catch
it. The daemon's journal, gRPC service, status and cancel must outlive that, so the process that calls `ray.init`
is this one, `python -m v2vz_daemon.cluster.driver FD`, never the daemon. When it dies, the daemon sees its socket
close, fails the spans that were in flight as if their workers had died (they run again), and starts a new one.

The child runs in a session of its own (the terminal's Ctrl-C never reaches Ray's processes) with its stdout and
stderr in a log file of the daemon's private Ray folder (Ray's C++ warnings and its signal stack dumps stay there).

Messages are tuples pickled with plain pickle (tensors by value) on a Unix socket pair (multiprocessing.connection):
- daemon -> driver: ("call", id, method, args), ("cancel", id), ("stop",)
- driver -> daemon: ("ok", id, value), ("error", id, exception), ("lost", id, reason), ("progress", id, event)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

log = logging.getLogger("v2vz.daemon")

POLL = 0.05  # seconds between two progress drains of a running span
NODE_POLL = 1.0  # seconds between two looks at the raylet and GCS under the driver
STOP_GRACE = 20.0  # seconds the driver gets to shut Ray down before its process group is killed


class Lost(Exception):
    """The worker of a call died, or the driver process itself did (then every worker with it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------------------------
# The daemon's side


class DriverProcess:
    """One driver child: start it, call it from any thread, learn when it dies (`on_death(self, reason)`, once)."""

    generations = itertools.count(1)

    def __init__(self, folder: Path, on_death: Callable[[DriverProcess, str], None]) -> None:
        import socket

        self.folder = folder
        self.log_path = folder / "driver.log"
        self.generation = next(self.generations)
        self.on_death = on_death
        ours, theirs = socket.socketpair()
        self._send_lock = threading.Lock()
        self._calls: dict[int, queue.SimpleQueue] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.alive = True
        self.reason = ""
        self.stopping = False
        with open(self.log_path, "ab") as driver_log:  # the child's stdout/stderr: Ray's own output
            self.process = subprocess.Popen(
                [sys.executable, "-m", "v2vz_daemon.cluster.driver", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=driver_log,
                stderr=driver_log,
                start_new_session=True,  # Ctrl-C in the daemon's terminal never reaches Ray
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        theirs.close()
        self.conn = Connection(ours.detach())
        threading.Thread(target=self._read, name=f"v2vz-ray-driver-{self.generation}", daemon=True).start()

    def call(
        self,
        method: str,
        *args,
        progress: Callable[[tuple], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        timeout: float | None = None,
    ):
        """Run `method` in the driver; its exception is raised here, Lost when the worker or the driver died."""
        call_id = next(self._ids)
        answers: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            if not self.alive:
                raise Lost(self.reason or "the Ray driver is not running")
            self._calls[call_id] = answers
        try:
            self._send(("call", call_id, method, args))
            deadline = None if timeout is None else time.monotonic() + timeout
            flagged = False
            while True:
                if cancel and not flagged and cancel():  # at every answer too: progress may come faster than POLL
                    self._send(("cancel", call_id))
                    flagged = True
                try:
                    kind, value = answers.get(timeout=POLL if cancel else 1.0)
                except queue.Empty:
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"{method} did not answer in {timeout:g} s") from None
                    continue
                if kind == "progress":
                    if progress:
                        progress(value)
                elif kind == "ok":
                    return value
                elif kind == "lost":
                    raise Lost(value)
                else:
                    raise value
        finally:
            with self._lock:
                self._calls.pop(call_id, None)

    def _send(self, message: tuple) -> None:
        try:
            data = pickle.dumps(message)  # plain pickle: torch's multiprocessing reductions would pass fds
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, ValueError) as error:  # the child is gone: the reader reports its death
            raise Lost(self.reason or f"the Ray driver is gone ({error})") from None

    def _read(self) -> None:
        while True:
            try:
                kind, call_id, *value = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                break
            except Exception as error:  # noqa: BLE001 - an answer that cannot be unpickled fails only its call
                log.warning("the Ray driver sent an unreadable answer: %s", error)
                continue
            with self._lock:
                answers = self._calls.get(call_id)
            if answers is not None:
                answers.put((kind, value[0] if value else None))
        self._died()

    def _died(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        code = self.process.poll()
        how = "still running" if code is None else _how(code)
        self.reason = f"the Ray driver process (pid {self.process.pid}) ended ({how}){self._last_words()}"
        self._kill_group()  # what is left of its Ray processes (they normally die with it)
        with self._lock:
            self.alive = False
            pending, self._calls = list(self._calls.values()), {}
        if not self.stopping:
            self.on_death(self, self.reason)
        for answers in pending:
            answers.put(("lost", self.reason))

    def _last_words(self) -> str:
        """Why Ray gave up, from the end of the driver's log: a line that names the raylet or the GCS."""
        with contextlib.suppress(OSError):
            with open(self.log_path, "rb") as driver_log:
                driver_log.seek(max(0, driver_log.seek(0, os.SEEK_END) - 16384))
                lines = driver_log.read().decode(errors="replace").splitlines()
            for line in reversed(lines):
                lower = line.lower()
                if any(word in lower for word in ("raylet", "gcs", "check failed", "fatal", "driver ends")):
                    return ": " + line.strip()[-300:]
        return ""

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Shut Ray down in the driver (its workers and, for a local cluster, its raylet and GCS), then end it."""
        self.stopping = True
        with contextlib.suppress(Lost):
            self._send(("stop", 0))
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("the Ray driver did not stop in %g s: killed", STOP_GRACE)
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        with contextlib.suppress(OSError):
            self.conn.close()


# ---------------------------------------------------------------------------------------------------------------
# The driver's side (the child process)


class Driver:
    """Ray's driver: the cluster connection, the actors, and the daemon's calls on them, each on a thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self.ray = None
        self.actors: dict[str, object] = {}
        self.anchors: OrderedDict[str, object] = OrderedDict()  # an anchored job's anchors in the object store
        self.cancelled: set[int] = set()
        self.executor = ThreadPoolExecutor(max_workers=128, thread_name_prefix="v2vz-driver")

    def serve(self) -> None:
        while True:
            try:
                message = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):  # the daemon is gone: take Ray down with us
                break
            if message[0] == "stop":
                break
            if message[0] == "cancel":
                self.cancelled.add(message[1])
            elif message[0] == "call" and message[2] == "start":
                self._answer(*message[1:])  # ray.init on the main thread: Ray sets its signal handlers there
            elif message[0] == "call":
                self.executor.submit(self._answer, *message[1:])
        if self.ray is not None and self.ray.is_initialized():
            with contextlib.suppress(Exception):
                self.ray.shutdown()

    def send(self, message: tuple) -> None:
        try:
            data = pickle.dumps(message)
            if message[0] == "error":
                pickle.loads(data)  # an exception the daemon could not rebuild would leave its call waiting
        except Exception:  # noqa: BLE001 - an exception pickle cannot carry: its class and one line instead
            first = str(message[2]).splitlines()[0] if str(message[2]) else ""
            data = pickle.dumps(("error", message[1], RuntimeError(f"{type(message[2]).__name__}: {first}")))
        with self._send_lock, contextlib.suppress(OSError):
            self.conn.send_bytes(data)

    def _answer(self, call_id: int, method: str, args: tuple) -> None:
        ray = self.ray
        lost = ()
        if ray is not None:
            lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        try:
            value = getattr(self, f"do_{method}")(call_id, *args)
        except lost as error:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            self.send(("lost", call_id, reason))
        except Exception as error:  # noqa: BLE001 - the daemon raises it in the caller's thread
            if ray is not None and isinstance(error, ray.exceptions.RayTaskError):  # what the actor raised
                cause = getattr(error, "cause", None)
                error = cause if isinstance(cause, BaseException) else error
            self.send(("error", call_id, error))
        else:
            self.send(("ok", call_id, value))
        finally:
            self.cancelled.discard(call_id)

    def do_start(self, _call_id: int, config, temp_dir: str | None) -> dict:
        from v2vz_daemon.cluster import connect

        self.ray = connect.start(config, temp_dir)
        placed = connect.placement(self.ray, config)
        threading.Thread(
            target=self._watch, args=(config.address is None,), name="v2vz-node-watch", daemon=True
        ).start()
        return placed

    def _watch(self, local: bool) -> None:
        """End this process when the node under it is gone, so that the daemon brings the cluster back.

        Ray itself ends a driver whose GCS stays unreachable (`gcs_rpc_server_reconnect_timeout_s`), but not always
        one whose raylet died: its actors die and every later call hangs or fails. A local cluster's raylet and GCS
        are this process's children (checked every NODE_POLL seconds); a joined node's raylet is asked of the GCS.
        """
        ray = self.ray
        from ray._private import ray_constants

        node = ray._private.worker._global_node
        vital = (ray_constants.PROCESS_TYPE_RAYLET, ray_constants.PROCESS_TYPE_GCS_SERVER)
        node_id = ray.get_runtime_context().get_node_id()
        while True:
            time.sleep(NODE_POLL)
            if local:
                for kind in vital:
                    for info in node.all_processes.get(kind, []):
                        code = info.process.poll()
                        if code is not None:
                            self._give_up(f"Ray's {kind} (pid {info.process.pid}) died ({_how(code)})")
            else:
                try:
                    mine = [n for n in ray.nodes() if n.get("NodeID") == node_id]
                except Exception:  # noqa: BLE001 - the GCS is unreachable: Ray ends this process if it stays so
                    continue
                if mine and not mine[0].get("Alive", True):
                    self._give_up(f"this machine's Ray node (raylet) died: {mine[0].get('NodeManagerAddress', '')}")

    def _give_up(self, why: str) -> None:
        log.error("%s: the driver ends so that the daemon brings the cluster back", why)
        sys.stderr.flush()
        os._exit(3)

    def do_make(self, _call_id: int, plan: dict) -> list[str]:
        """Create the actors (one per worker name); `load` then loads each one's model."""
        from v2vz_daemon.cluster.worker_actor import EditWorker

        actor_class = self.ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=4)(EditWorker)
        resources = {"num_gpus": 1, "num_cpus": 0} if plan["gpu"] else {"num_gpus": 0, "num_cpus": plan["threads"]}
        suffix = uuid.uuid4().hex[:8]
        for name in plan["names"]:
            self.actors[name] = actor_class.options(
                name=f"v2vz-{name}-{suffix}", scheduling_strategy="SPREAD", **resources
            ).remote(name, *plan["args"])
        return list(self.actors)

    def do_load(self, _call_id: int, name: str, timeout: float | None = None) -> dict:
        return self.ray.get(self.actors[name].load.remote(), timeout=timeout)

    def do_describe(self, _call_id: int, name: str, timeout: float | None = None) -> dict:
        return self.ray.get(self.actors[name].describe.remote(), timeout=timeout)

    def do_facts(self, _call_id: int, name: str, model: str):
        return self.ray.get(self.actors[name].facts.remote(model))

    def do_put(self, _call_id: int, key: str, anchors) -> None:
        self.anchors[key] = self.ray.put(anchors)
        self.anchors.move_to_end(key)
        while len(self.anchors) > 4 * len(self.actors) + 4:  # jobs at once are at most the workers
            self.anchors.popitem(last=False)

    def do_edit(self, call_id: int, name: str, task, anchors_key: str | None):
        """One span on worker `name`: its progress sent as it comes, its cancel flagged once the daemon asks."""
        ray, actor, task_id = self.ray, self.actors[name], uuid.uuid4().hex
        anchors = None
        if anchors_key is not None:
            anchors = self.anchors[anchors_key]
            self.anchors.move_to_end(anchors_key)
        ref, flagged = actor.edit.remote(task_id, task, anchors), False
        while True:
            ready, _ = ray.wait([ref], timeout=POLL)
            for event in ray.get(actor.drain.remote(task_id, final=bool(ready))):
                self.send(("progress", call_id, event))
            if ready:
                return ray.get(ref)
            if not flagged and call_id in self.cancelled:
                actor.cancel.remote(task_id)
                flagged = True


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def main() -> None:
    # Ray's driver must not inherit the daemon's signal handling: SIGINT is the daemon's to act on (it sends stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    Driver(Connection(int(sys.argv[1]))).serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # Ray's atexit hooks already ran in shutdown(); finalising its C++ threads can only abort


if __name__ == "__main__":
    main()
