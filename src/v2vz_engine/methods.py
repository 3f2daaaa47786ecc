"""The engine's methods behind one boundary: what differs between vid2vid-zero and FlowEdit, and nothing else.

A job names its method (EditOptions.method); everything around the edit - reading, windows written in order,
mattes composited over the shot's own pixels, outputs, takes, the daemon, the plugins - is the same for every
method. A method is three things:

- `plan`: from the job, its source and the device's facts, the working size and the spans (WindowPlan) the job is
  cut into (vid2vid-zero: frame windows chained or anchored, sized from memory; FlowEdit: the whole range as one
  span, whose windows are in latent space inside the editor);
- an *editor*, what a runner holds once a model is loaded (`load_editor`): `edit_span(task, anchors, progress=,
  cancel=, cache=) -> SpanResult`, and `method`, `model` and `caches_inversion` (vid2vid-zero's
  VideoEditPipeline, FlowEdit's FlowEditor);
- `caches_inversion`: whether a span's inversion is worth keeping for a re-prompt (FlowEdit inverts nothing).

The model family decides which editor a model gets (model_source.model_family: "sd" or "wan"), and a job whose
method does not run on its model is refused before anything runs (`check_method`).

Adding a third method: its EditOptions value (v2vz.api.job.EditMethod, its own options beside FLOWEDIT_OPTIONS), an
editor class with `edit_span`, a `Method` entry in METHODS with its plan and the families it runs on, and (if it
needs a new kind of model) a family in model_source.model_family and a loader in `load_editor`. run.py, the daemon,
the cluster workers and the CLI need no change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditJob, EditOptions
from v2vz_engine import media
from v2vz_engine.cpu import apply_cpu_threads
from v2vz_engine.model_source import model_family
from v2vz_engine.pipeline import VideoEditPipeline
from v2vz_engine.spans import Vid2VidZero
from v2vz_engine.windows import WindowPlan, auto_window, free_memory_bytes, plan_links

PREVIEW_STEPS = 10  # the preview pass: about 10 steps ...
PREVIEW_MIN_SIDE = 32  # ... at half the working size, never below this long side
WAN_SIZE_MULTIPLE = 16  # Wan's sides: the VAE's 8 times the transformer's 2x2 patches


@dataclass(frozen=True)
class DeviceFacts:
    """What planning a job needs of the device that edits it: the model's native size, its dtype, free memory."""

    native_size: int
    dtype_bytes: int
    free_bytes: int | None
    cpu_threads: int | None = None  # the torch threads a CPU edits with (part of its pixels); None on a GPU
    family: str = "sd"  # the model's family ("sd", "sdxl", "wan"): its method (methods.py), memory per frame

    @classmethod
    def of(cls, editor: Any) -> DeviceFacts:
        """The facts of an editor's model (methods.py: vid2vid-zero's pipeline or FlowEdit's editor)."""
        model = editor.model
        native = model.native_size if isinstance(model.native_size, int) else max(model.native_size)
        dtype_bytes = torch.finfo(model.dtype).bits // 8
        threads = apply_cpu_threads() if model.device.type == "cpu" else None
        return cls(native, dtype_bytes, free_memory_bytes(model.device), threads, model.family)


Plan = tuple[tuple[int, int], WindowPlan, bool]  # (working size, the spans, whether the window was chosen from memory)


@dataclass(frozen=True)
class Method:
    """One editing method: the model families it runs on, how it cuts a job into spans, what it caches."""

    name: str
    families: tuple[str, ...]
    caches_inversion: bool
    plan: Callable[[EditJob, media.MediaInfo, DeviceFacts], Plan]
    preview: Callable[[EditOptions], EditOptions]
    model_hint: str  # what to pass as --model when a job's model is of another family


def long_side(job: EditJob, facts: DeviceFacts) -> int:
    """The working size's long side: --size, else the model's native one; a preview halves it."""
    side = job.options.size or facts.native_size
    return max(PREVIEW_MIN_SIDE, side // 2) if job.preview else side


def plan_vid2vid_zero(job: EditJob, info: media.MediaInfo, facts: DeviceFacts) -> Plan:
    """Frame windows (windows.py): chained or anchored, as many frames as the free memory allows unless --window."""
    width, height = media.working_size(info.width, info.height, long_side(job, facts))
    options = job.options
    automatic = options.window == 0
    window = (
        auto_window(width, height, facts.free_bytes, facts.dtype_bytes, facts.family) if automatic else options.window
    )
    return (width, height), plan_links(job.frames, window, options.window_links, options.anchors), automatic


def plan_flowedit(job: EditJob, info: media.MediaInfo, facts: DeviceFacts) -> Plan:
    """The whole range as one span: FlowEdit's windows are latent windows blended at every step (flowedit_editor),
    so the clip is one latent video and has no seam. Sides multiples of 16."""
    width, height = media.working_size(info.width, info.height, long_side(job, facts))

    def to16(value: int) -> int:
        return max(WAN_SIZE_MULTIPLE, int(value / WAN_SIZE_MULTIPLE + 0.5) * WAN_SIZE_MULTIPLE)

    return (to16(width), to16(height)), WindowPlan((range(job.frames),), "chained"), False


def preview_vid2vid_zero(options: EditOptions) -> EditOptions:
    """Direct inversion (exact, no optimization), at most PREVIEW_STEPS steps."""
    return options.replace(inversion="direct", steps=min(options.steps, PREVIEW_STEPS))


def preview_flowedit(options: EditOptions) -> EditOptions:
    """At most PREVIEW_STEPS steps, n_max and n_min scaled with them (the same share of the schedule edits)."""
    steps = min(options.steps, PREVIEW_STEPS)
    if steps == options.steps:
        return options
    scale = steps / options.steps
    n_max = max(1, round(options.n_max * scale)) if options.n_max else 0
    scaled = dataclasses.replace(options, steps=steps, n_max=n_max)
    return dataclasses.replace(scaled, n_min=min(round(options.n_min * scale), scaled.edit_steps - 1))


METHODS: dict[str, Method] = {
    "vid2vid-zero": Method(
        "vid2vid-zero",
        ("sd", "sdxl"),
        True,
        plan_vid2vid_zero,
        preview_vid2vid_zero,
        "a Stable Diffusion model (a folder, a checkpoint file, a hub id, or toyworld, tiny, sd15-random ...)",
    ),
    "flowedit": Method(
        "flowedit",
        ("wan",),
        False,
        plan_flowedit,
        preview_flowedit,
        "a Wan 2.1 text-to-video model (a Wan diffusers folder, a hub id such as "
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers, or the built-in tiny-wan or wan-random)",
    ),
}


def method_of(options: EditOptions) -> Method:
    return METHODS[options.method]


def check_method(options: EditOptions, family: str | None, model: str) -> None:
    """One line when the job's method does not run on its model's family (None: not known yet, nothing said)."""
    method = method_of(options)
    if family is None or family in method.families:
        return
    raise InvalidArgument(
        f"method {method.name} does not run on model {model!r} ({family}): pass --model {method.model_hint}"
    )


def load_editor(spec: str, device: Any = None, cache_dir: str | Path | None = None) -> Any:
    """The editor of the model `spec` names: FlowEdit's for a Wan model, vid2vid-zero's for any other."""
    if model_family(spec) == "wan":
        from v2vz_engine.flowedit_editor import FlowEditor
        from v2vz_engine.wan.models import load_wan

        return FlowEditor(load_wan(spec, device, cache_dir=cache_dir))
    from v2vz_engine.models import load_model
    from v2vz_engine.pipeline import VideoEditPipeline

    return Vid2VidZero(VideoEditPipeline(load_model(spec, device, cache_dir)))


def editor_of(loaded: Any) -> Any:
    """An editor for what a caller holds: an editor as it is, a bare VideoEditPipeline (the API's and the tests'
    way to hold a vid2vid-zero model) in vid2vid-zero's editor."""
    return Vid2VidZero(loaded) if isinstance(loaded, VideoEditPipeline) else loaded
