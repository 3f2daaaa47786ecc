"""The model the daemon holds: loaded once, on a thread of its own, and described for GetInfo and health."""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from v2vz.api.errors import V2vzError
from v2vz.api.events import Stage

log = logging.getLogger("v2vz.daemon")

PipelineFactory = Callable[[], Any]  # () -> an editor (v2vz_engine.methods); tests pass their own


class ModelSlot:
    """The one model on the device: the daemon's default, loaded at start on a thread of its own, then whichever
    model the next job names (the one before is evicted first: one model is resident at a time).

    `ready` is set once jobs can run, `error` says why the default model never will.
    """

    def __init__(self, model: str, device: str, cache_dir: Path, factory: PipelineFactory | None = None) -> None:
        self.default = model
        self.model = model  # the resident model (or the one loading)
        self._device_spec = device
        self._cache_dir = cache_dir
        self._factory = factory  # tests: () -> the default model's pipeline
        self.pipeline = None
        self.error: str | None = None
        self.device = "loading"
        self.dtype = ""
        self.ready = threading.Event()

    def _load_pipeline(self, spec: str):
        """The editor of model `spec` (v2vz_engine.methods.load_editor: FlowEdit's for a Wan model)."""
        from v2vz_engine.methods import load_editor

        if spec == self.default and self._factory is not None:
            return self._factory()
        return load_editor(spec, self._device_spec, self._cache_dir)

    def load(self) -> bool:
        """Load the default model (on the caller's thread); False, with `error` set, when it cannot be loaded."""
        try:
            self.pipeline = self._load_pipeline(self.default)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, never a silent NOT_SERVING forever
            self.error = str(exc) if isinstance(exc, V2vzError) else f"{type(exc).__name__}: {exc}"
            log.error("the model could not be loaded: %s", self.error)
            return False
        self._describe()
        self.ready.set()
        return True

    def pipeline_for(self, spec: str, progress: Callable[..., None] | None = None):
        """The pipeline of model `spec` (empty: the default), loaded now if another one is resident.

        A model that cannot be loaded raises (the job fails with the reason); the slot is then empty and the next
        job loads what it needs.
        """
        spec = spec or self.default
        if spec == self.model and self.pipeline is not None:
            return self.pipeline
        from v2vz_engine.run import free_device_memory

        if progress:
            progress(Stage.LOAD_MODEL, 0, 1)
        log.info("loading model %s (evicting %s)", spec, self.model if self.pipeline is not None else "nothing")
        self.pipeline = None
        free_device_memory()
        self.model = spec
        self.pipeline = self._load_pipeline(spec)
        self._describe()
        if progress:
            progress(Stage.LOAD_MODEL, 1, 1)
        return self.pipeline

    def _describe(self) -> None:
        model = self.pipeline.model
        self.device, self.dtype = describe_device(model.device), str(model.dtype).removeprefix("torch.")
        log.info("model %s ready on %s (%s)", model.name, self.device, self.dtype)


def import_engine() -> dict[str, str]:
    """Import torch, diffusers, transformers and the engine on the calling (main) thread, before any other thread
    starts: their lazy module machinery is not thread-safe, and a model loading in one thread while a request
    imports in another fails with "cannot import name ... from partially initialised module". Returns versions."""
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: F401 - resolve lazy imports
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401

    import v2vz_engine.media
    import v2vz_engine.methods
    import v2vz_engine.models
    import v2vz_engine.pipeline
    import v2vz_engine.run  # noqa: F401

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "grpc": grpc.__version__,
    }


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def memory() -> tuple[int, int]:
    """(total, in use) bytes of the device the model runs on: GPU memory on CUDA, else this process's RSS."""
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return total, total - free
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    try:
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = 0
    return total, rss
