"""The second method: FlowEdit (flowedit.py) on a Wan 2.1 text-to-video model, as an editor of spans.

What it does with a span (the whole job: methods.py plans one span, because the windows are in latent space):
1. the frames, padded to Wan's 4k+1 by repeating the last one, encoded once (the Wan VAE runs causally over time,
   tiled in space, so the clip's length adds only its latents) and the three prompts encoded (source, target, and
   the empty negative prompt both guidances use);
2. the latent frames cut into overlapping windows of `window` frames' worth (81 by default: 21 latent frames)
   that advance in lock step: at each step of the plan every window takes its step with one clip-level noise draw
   (sliced, so overlapping windows see the same noise), then the overlaps are blended with linear ramps and
   written back, so there is one latent video and no seam; the transformer only ever sees one window;
3. a matte keeps the source's latents outside it (its own pixels come back in run.py's composite);
4. decoded (causally, tiled) and the padding dropped.

No inversion: nothing is cached between jobs (a re-prompt costs what a cold edit costs, minus the model load).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from v2vz.api.errors import Cancelled, InvalidArgument
from v2vz.api.events import ProgressFn, Stage
from v2vz.api.job import EditOptions
from v2vz_engine.flowedit import (
    FlowEditSettings,
    blend_outside,
    draw_step_noise,
    flowedit_plan,
    flowedit_start,
    flowedit_step,
)
from v2vz_engine.pipeline import CancelFn
from v2vz_engine.spans import Anchors, SpanResult, SpanTask
from v2vz_engine.wan.codecs import decode_video, encode_prompt, encode_video
from v2vz_engine.wan.models import WanModel

DEFAULT_WINDOW = 81  # frames a window covers (Wan 2.1's clip length: 21 latent frames)
OVERLAP_LATENTS = 4  # latent frames two windows share (16 frames), blended with linear ramps
NEGATIVE_PROMPT = ""  # the unconditional prompt of both guidances (the published FlowEdit ports use the empty one)


def settings_of(options: EditOptions, shift: float) -> FlowEditSettings:
    """The job's FlowEdit settings: its steps, n_max/n_min/n_avg, source guidance, guidance (the target's)."""
    settings = FlowEditSettings(
        steps=options.steps,
        n_max=options.edit_steps,
        n_min=options.n_min,
        n_avg=options.n_avg,
        source_guidance=options.source_guidance,
        target_guidance=options.guidance,
        shift=shift,
    )
    if problem := settings.problem():
        raise InvalidArgument(f"flowedit: {problem}")
    return settings


def latent_windows(latent_frames: int, window_latents: int, overlap: int = OVERLAP_LATENTS) -> list[range]:
    """Overlapping windows of `window_latents` latent frames covering `latent_frames`, the last one ending at the
    end (so every window is full-length when the clip is long enough); one window when it fits."""
    if latent_frames <= window_latents:
        return [range(latent_frames)]
    overlap = min(overlap, window_latents - 1)
    stride = window_latents - overlap
    starts = list(range(0, latent_frames - window_latents, stride)) + [latent_frames - window_latents]
    return [range(start, start + window_latents) for start in starts]


def blend_weights(windows: list[range], latent_frames: int) -> list[torch.Tensor]:
    """Per window, the weight of each of its latent frames in the blend: 1 inside, a linear ramp across each
    overlap (so the weights of a latent frame sum to 1 over the windows that hold it)."""
    raw = []
    for index, window in enumerate(windows):
        weight = torch.ones(len(window))
        if index > 0:
            shared = windows[index - 1].stop - window.start
            weight[:shared] = torch.minimum(weight[:shared], torch.arange(1, shared + 1) / (shared + 1))
        if index + 1 < len(windows):
            shared = window.stop - windows[index + 1].start
            ramp = torch.arange(shared, 0, -1) / (shared + 1)
            weight[len(window) - shared :] = torch.minimum(weight[len(window) - shared :], ramp)
        raw.append(weight)
    total = torch.zeros(latent_frames)
    for window, weight in zip(windows, raw, strict=True):
        total[window.start : window.stop] += weight
    return [weight / total[window.start : window.stop] for window, weight in zip(windows, raw, strict=True)]


def latent_mask(matte: np.ndarray, model: WanModel, latent_frames: int) -> torch.Tensor:
    """A matte (F, h, w) in 0..1 at the working size as a latent mask (1, 1, L, h/8, w/8): each latent frame takes
    the largest value of the frames it encodes (the first frame alone, then groups of 4), each latent pixel the
    mean of its 8x8 block, so the edit never stops short of a matte's white."""
    step, group = model.spatial_compression, model.temporal_compression
    frames = torch.from_numpy(np.ascontiguousarray(matte, dtype=np.float32))
    pooled = torch.nn.functional.avg_pool2d(frames[:, None], step)[:, 0]  # (F, h/8, w/8)
    latents = [pooled[:1].amax(0)]
    for index in range(1, latent_frames):
        latents.append(pooled[1 + (index - 1) * group : 1 + index * group].amax(0))
    return torch.stack(latents)[None, None]


def pad_frames(frames: np.ndarray, model: WanModel) -> np.ndarray:
    """The frames padded to 4k+1 by repeating the last one (the padding is dropped after decoding)."""
    count = len(frames)
    wanted = count if model.valid_frame_count(count) else model.usable_frames(count) + model.temporal_compression
    if wanted == count:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], wanted - count, axis=0)])


class FlowEditor:
    """A Wan model and FlowEdit: what a runner holds for `--method flowedit` (methods.py)."""

    method = "flowedit"
    caches_inversion = False  # FlowEdit inverts nothing

    def __init__(self, model: WanModel) -> None:
        self.model = model

    def edit_span(
        self,
        task: SpanTask,
        anchors: Anchors | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        cache: object | None = None,
    ) -> SpanResult:
        """Edit the span's frames (the whole job: one span) with FlowEdit; `anchors` and `cache` are vid2vid-zero's
        and have no meaning here."""
        job, model = task.job, self.model
        timings: dict[str, float] = {}
        settings = settings_of(job.options, model.flow_shift)
        steps = flowedit_plan(settings)
        mark = time.perf_counter()
        count = len(task.frames)
        source = encode_video(model, pad_frames(task.frames, model))
        embeds = [encode_prompt(model, text) for text in (job.source_prompt, job.prompt, NEGATIVE_PROMPT)]
        timings["encode"] = time.perf_counter() - mark
        latent_frames = source.shape[2]
        window_frames = job.options.window or DEFAULT_WINDOW
        windows = latent_windows(latent_frames, model.latent_frames(max(1, model.usable_frames(window_frames))))
        weights = [w.to(source.device).view(1, 1, -1, 1, 1) for w in blend_weights(windows, latent_frames)]
        states = [flowedit_start(source[:, :, w.start : w.stop], *embeds, settings) for w in windows]
        generator = torch.Generator(device=model.device).manual_seed(int(job.options.seed))
        mark = time.perf_counter()
        latents = source
        for done, step in enumerate(steps):
            if cancel and cancel():
                raise Cancelled(f"cancelled at step {done + 1} of {len(steps)}")
            noises = draw_step_noise(step, source.shape, generator, model.device)
            states = [
                flowedit_step(model.transformer, state, step, [noise[:, :, w.start : w.stop] for noise in noises])
                for state, w in zip(states, windows, strict=True)
            ]
            latents = _blend(states, windows, weights, source)
            states = [
                dataclasses.replace(state, latents=latents[:, :, w.start : w.stop])
                for state, w in zip(states, windows, strict=True)
            ]
            if progress:
                progress(Stage.EDIT, done + 1, len(steps))
        timings["edit"] = time.perf_counter() - mark
        if task.matte is not None:
            mask = latent_mask(pad_frames(task.matte[..., None], model)[..., 0], model, latent_frames)
            latents = blend_outside(latents, source, mask.to(latents.device, latents.dtype))
        mark = time.perf_counter()
        frames = decode_video(model, latents)[:count]
        timings["decode"] = time.perf_counter() - mark
        return SpanResult(frames, None, timings, cached=False)


def _blend(states: list, windows: list[range], weights: list[torch.Tensor], source: torch.Tensor) -> torch.Tensor:
    """The windows' latents as one latent video: the source plus, at each latent frame, the weighted sum of how far
    each window that holds it moved from the source there (so windows that did not move leave it exactly)."""
    if len(states) == 1:
        return states[0].latents
    moved = torch.zeros_like(source)
    for state, window, weight in zip(states, windows, weights, strict=True):
        moved[:, :, window.start : window.stop] += (state.latents - state.source) * weight
    return source + moved
