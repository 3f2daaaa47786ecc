"""The model worker of a cluster: a Ray actor that keeps a model loaded and edits one span at a time.

It is a threaded actor so that the daemon can drain a span's progress and flag its cancel while the span runs: the
edit checks its flag between two diffusion steps, as the local worker does. Progress is kept per span until drained
(the daemon polls every few tens of milliseconds), so nothing but the span's tensors crosses the object store.
Inversions go to the daemon's cache folder, shared by every worker on the host (atomic files, mtime LRU): one
worker's inversion serves another's re-prompt, and a restarted daemon still has them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger("v2vz.daemon")

SPAN_SECONDS = "span"  # in a result's timings: the span's seconds in the worker, taken out by the front end


class EditWorker:
    """One model on one device (a GPU, or the CPU with `threads` torch threads)."""

    def __init__(
        self,
        name: str,
        model: str,
        device: str,
        cache_dir: str,
        inversions_dir: str | None,
        cache_max_bytes: int,
        threads: int,
    ) -> None:
        from v2vz.api.runtime_env import prepare_environment

        prepare_environment()  # OpenMP's short spin, before this worker process loads torch (its OpenMP)
        import torch

        from v2vz_daemon.model_slot import ModelSlot, import_engine
        from v2vz_engine.cpu import apply_cpu_threads

        if device == "cpu" or not torch.cuda.is_available():
            apply_cpu_threads(threads)  # every span of this worker runs with them (v2vz_engine.cpu)
            device = "cpu"
        import_engine()
        self.name = name
        self.slot = ModelSlot(model, device, Path(cache_dir))
        self.cache = None
        if inversions_dir:
            from v2vz_daemon.inversion_cache import InversionCache

            try:
                self.cache = InversionCache(Path(inversions_dir), cache_max_bytes)
            except OSError as error:  # a node that cannot see the daemon's folder edits without the cache
                log.warning("worker %s: no inversion cache (%s)", name, error)
        self._edit_lock = threading.Lock()  # one span (or model load) at a time on the device
        self._lock = threading.Lock()
        self._progress: dict[str, list[tuple]] = {}
        self._cancelled: set[str] = set()

    def load(self) -> dict:
        """Load the default model; what the daemon shows of this worker."""
        with self._edit_lock:
            if self.slot.pipeline is None and not self.slot.load():
                from v2vz.api.errors import ModelUnavailable

                raise ModelUnavailable(self.slot.error or "the model could not be loaded")
        return self.describe()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "pid": os.getpid(),
            "node": _node_address(),
            "host": socket.gethostname(),
            "device": self.slot.device,
            "dtype": self.slot.dtype,
            "model": self.slot.model,
        }

    def facts(self, model: str):
        from v2vz_engine.run import DeviceFacts

        with self._edit_lock:
            return DeviceFacts.of(self.slot.pipeline_for(model))

    def edit(self, task_id: str, task, anchors):
        """Edit one span with the model's editor (v2vz_engine.methods); its progress waits in `drain`, `cancel`
        stops it."""
        events = self._progress.setdefault(task_id, [])

        def progress(stage, step, total, cached=False, **_where) -> None:
            with self._lock:
                events.append((str(stage), step, total, cached))

        def cancel() -> bool:
            return task_id in self._cancelled

        # No gc.collect() per span (the embedded worker's free_device_memory after a job): it costs a tenth of a
        # second with torch and diffusers loaded, and a span's tensors are freed when it returns anyway.
        with self._edit_lock:
            if cancel():
                from v2vz.api.errors import Cancelled

                raise Cancelled(f"cancelled before {task.label}")
            from v2vz_engine.methods import editor_of

            pipeline = editor_of(self.slot.pipeline_for(task.job.model, progress))
            began = time.perf_counter()
            cache = self.cache if pipeline.caches_inversion else None
            result = pipeline.edit_span(task, anchors, progress=progress, cancel=cancel, cache=cache)
            result.timings[SPAN_SECONDS] = time.perf_counter() - began  # the front end's overhead is the rest
            return result

    def drain(self, task_id: str, final: bool = False) -> list[tuple]:
        """The span's progress events since the last drain (all of them, and forgotten, when `final`)."""
        with self._lock:
            events = self._progress.pop(task_id, []) if final else self._progress.get(task_id, [])
            taken = list(events)
            events.clear()
        if final:
            self._cancelled.discard(task_id)
        return taken

    def cancel(self, task_id: str) -> None:
        self._cancelled.add(task_id)


def _node_address() -> str:
    import ray

    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside a Ray worker (tests of the class alone)
        return "local"
