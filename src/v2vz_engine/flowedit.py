"""FlowEdit (Kulikov et al. 2024, "Inversion-Free Text-Based Editing Using Pre-Trained Flow Models") on latents.

The edit is an ODE on the latents z, started at the source x_src, whose velocity is the difference of the target
and source velocities of a pre-trained flow model (here Wan 2.1 T2V) at coupled points: at noise level t, with a
fresh noise draw eps, z_src_t = (1 - t) x_src + t eps and z_tar_t = z_src_t + (z - x_src). The first
`steps - n_max` steps of the schedule are skipped (they would change the layout); the difference is averaged over
`n_avg` draws per step; the last `n_min` steps regenerate the target SDEdit-style from the coupled point (fresh
noise at the first of them, then plain Euler steps with the target velocity), which sharpens strong edits at the
cost of fidelity. No inversion is needed: the noise never enters the result except through the velocity difference.

Step-by-step and windowed use: the algorithm is split so that a caller can run several clips (latent windows of a
long clip) in lock step and blend their overlaps in latent space between steps:

    plan = flowedit_plan(settings)                     # the steps that run, in order (n_max of them)
    states = [flowedit_start(window_source, ...) for each window]
    for step in plan:
        noise = draw_step_noise(step, clip_shape, generator)   # clip-level noise, sliced per window
        states = [flowedit_step(transformer, s, step, [n[window] for n in noise]) for each window]
        blend the windows' `state.latents` over their overlaps; write back with dataclasses.replace(state, latents=)

`state.latents` is always the one tensor that advances: the edit z while editing, the noisy target sample during
the last n_min steps, the result after the last step. At a given step every window is in the same phase, so a
linear blend of overlaps is consistent. Slicing one clip-level draw per window gives overlapping windows the same
noise, so their coupled points agree where they overlap. `flowedit()` is this loop for one clip.

Noise order (so an independent loop with the same generator draws the same noise): for each step of the plan,
in order, `step.draws` tensors of the source's shape, each `torch.randn(shape, generator=generator,
dtype=torch.float32, device=generator.device)`: n_avg of them at each editing step (draw k for average term k),
one at the first sampling step (below n_min), none after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from v2vz.api.errors import Cancelled

TRAIN_TIMESTEPS = 1000  # Wan 2.1's flow scheduler: the transformer's timestep is sigma * 1000

MAX_STEPS = 1000
MAX_N_AVG = 32  # each draw costs two guided velocities per step; beyond 32 the average changes nothing visible
GUIDANCE_RANGE = (1.0, 30.0)  # 1 = no guidance (one call); published FlowEdit targets go up to 13.5-19.5
SHIFT_RANGE = (0.0, 20.0)  # exclusive low end: Wan uses 3.0 at 480p and 5.0 at 720p

ProgressFn = Callable[[int, int], None]  # (steps done, steps in all)
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class FlowEditSettings:
    """What FlowEdit needs besides the prompts. Defaults are the published Wan 2.1 settings.

    Sources (see /tmp/h/flowedit_report.md for the full notes):
    - steps 50, source guidance 5.0, target guidance 13.5, n_min 0, n_avg 1 and strength 0.7 (n_max = int(50 * 0.7)
      = 35): the FlowEdit Wan 2.1 port that FlowEdit's README links (KyujinHan/Awesome-Training-Free-WAN2.1-Editing,
      config/*/*.yaml `flowedit:` blocks and WanPipeline.flowedit, which fixes n_avg = 1);
    - shift 3.0: Wan 2.1 at 480p (the same port and Wan's own diffusers scheduler config; 5.0 is for 720p).
    The reference repository (fallenshock/FlowEdit) uses 50 steps, n_max 33, guidance 3.5/13.5 for SD3 and
    28 steps, n_max 24, guidance 1.5/5.5 for FLUX, both with n_avg 1 and n_min 0.
    """

    steps: int = 50  # the schedule's length; the first steps - n_max of it are skipped
    n_max: int = 35  # editing starts this many steps before the end (higher: stronger edit, less of the source kept)
    n_min: int = 0  # the last n_min steps sample the target plainly (0: pure FlowEdit)
    n_avg: int = 1  # noise draws averaged per editing step
    source_guidance: float = 5.0
    target_guidance: float = 13.5
    shift: float = 3.0  # the flow schedule's shift (sigma -> shift*sigma / (1 + (shift-1)*sigma))

    def problem(self) -> str:
        """One line saying what makes no sense in these values, or "" when they are fine."""
        ints = {"steps": self.steps, "n_max": self.n_max, "n_min": self.n_min, "n_avg": self.n_avg}
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int):
                return f"FlowEdit {name} must be a whole number, got {value!r}"
        if not 1 <= self.steps <= MAX_STEPS:
            return f"FlowEdit steps must be 1..{MAX_STEPS}, got {self.steps}"
        if self.n_min < 0:
            return f"FlowEdit n_min must be 0 or more, got {self.n_min}"
        if self.n_max > self.steps:
            return f"FlowEdit n_max ({self.n_max}) must not exceed steps ({self.steps})"
        if self.n_min >= self.n_max:
            return f"FlowEdit n_min ({self.n_min}) must be below n_max ({self.n_max}): no step would edit"
        if not 1 <= self.n_avg <= MAX_N_AVG:
            return f"FlowEdit n_avg must be 1..{MAX_N_AVG}, got {self.n_avg}"
        low, high = GUIDANCE_RANGE
        for name, value in (("source", self.source_guidance), ("target", self.target_guidance)):
            if not (isinstance(value, int | float) and low <= value <= high):
                return f"FlowEdit {name} guidance must be {low:g}..{high:g}, got {value!r}"
        low, high = SHIFT_RANGE
        if not (isinstance(self.shift, int | float) and math.isfinite(self.shift) and low < self.shift <= high):
            return f"FlowEdit shift must be above {low:g} and at most {high:g}, got {self.shift!r}"
        return ""


def flow_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The N+1 sigmas, 1 down to 0, that diffusers' FlowMatchEulerDiscreteScheduler(shift=shift) gives after
    set_timesteps(steps), bit for bit (float32): its end points are shifted once in float32 when it is built, the
    steps between them are spaced in float64 and shifted again, as diffusers does."""
    train = np.linspace(1, TRAIN_TIMESTEPS, TRAIN_TIMESTEPS, dtype=np.float32)[[-1, 0]]  # first and last
    ends = torch.from_numpy(train.copy()) / TRAIN_TIMESTEPS
    ends = shift * ends / (1 + (shift - 1) * ends)
    sigma_max, sigma_min = ends[0].item(), ends[1].item()
    sigmas = np.linspace(sigma_max * TRAIN_TIMESTEPS, sigma_min * TRAIN_TIMESTEPS, steps) / TRAIN_TIMESTEPS
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    sigmas = torch.from_numpy(sigmas).to(torch.float32)
    return torch.cat([sigmas, torch.zeros(1)])


def flow_timesteps(steps: int, shift: float) -> torch.Tensor:
    """The N transformer timesteps (sigma * 1000, float32) that go with flow_sigmas, as the scheduler gives them."""
    return flow_sigmas(steps, shift)[:-1] * TRAIN_TIMESTEPS


@dataclass(frozen=True)
class FlowEditStep:
    """One step of the plan: from sigma to sigma_next at the transformer timestep `timestep`."""

    index: int  # position in the full schedule (0 = pure noise); the plan starts at steps - n_max
    sigma: float
    sigma_next: float
    timestep: float  # sigma * 1000 as the scheduler gives it (a float32 value)
    phase: Literal["edit", "sample"]
    draws: int  # noise tensors this step takes: n_avg when editing, 1 at the first sampling step, else 0


def flowedit_plan(settings: FlowEditSettings) -> tuple[FlowEditStep, ...]:
    """The n_max steps that run, in order; raises ValueError when the settings make no sense."""
    if problem := settings.problem():
        raise ValueError(problem)
    sigmas = flow_sigmas(settings.steps, settings.shift)
    timesteps = sigmas[:-1] * TRAIN_TIMESTEPS
    first_sample = settings.steps - settings.n_min  # the first index sampled plainly
    plan = []
    for index in range(settings.steps - settings.n_max, settings.steps):
        editing = index < first_sample
        plan.append(
            FlowEditStep(
                index=index,
                sigma=sigmas[index].item(),
                sigma_next=sigmas[index + 1].item(),
                timestep=timesteps[index].item(),
                phase="edit" if editing else "sample",
                draws=settings.n_avg if editing else int(index == first_sample),
            )
        )
    return tuple(plan)


def draw_step_noise(
    step: FlowEditStep, shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """The step's noise tensors in the documented order (module doc), on `device`. Without a generator the global
    RNG of `device` draws them."""
    source = generator.device if generator is not None else torch.device(device)
    return [
        torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device=source).to(device)
        for _ in range(step.draws)
    ]


@torch.no_grad()
def velocity(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    timestep: float | torch.Tensor,
    embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    guidance: float,
) -> torch.Tensor:
    """The classifier-free-guided velocity at `latents` (B, C, F, h, w), float32, called as WanPipeline calls its
    transformer. Conditional and unconditional rows go in one call of batch 2B when their embeddings have the same
    shape (the same result as two calls, to float noise); guidance 1 makes only the conditional call."""
    batch = latents.shape[0]
    dtype = getattr(transformer, "dtype", latents.dtype)
    device = latents.device

    def run(hidden: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        steps = torch.as_tensor(timestep, dtype=torch.float32, device=device).reshape(-1)
        out = transformer(
            hidden_states=hidden.to(dtype),
            timestep=steps.expand(hidden.shape[0]),
            encoder_hidden_states=text.to(device=device, dtype=dtype),
            return_dict=False,
        )[0]
        return out.float()

    def rows(text: torch.Tensor) -> torch.Tensor:
        return text if text.shape[0] == batch else text.expand(batch, *text.shape[1:])

    cond_text = rows(embeds)
    if guidance == 1:
        return run(latents, cond_text)
    if negative_embeds is None:
        raise ValueError("FlowEdit guidance above 1 needs negative (unconditional) embeddings")
    uncond_text = rows(negative_embeds)
    if uncond_text.shape == cond_text.shape:
        both = run(torch.cat([latents, latents]), torch.cat([uncond_text, cond_text]))
        uncond, cond = both[:batch], both[batch:]
    else:  # different text lengths cannot share a batch
        uncond, cond = run(latents, uncond_text), run(latents, cond_text)
    return uncond + guidance * (cond - uncond)


@dataclass(frozen=True, eq=False)
class FlowEditState:
    """What advances from step to step for one clip (or one latent window of a clip)."""

    source: torch.Tensor  # x_src (B, C, F, h, w) float32
    latents: torch.Tensor  # the edit z while editing; the noisy target sample while sampling; then the result
    source_embeds: torch.Tensor
    target_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    settings: FlowEditSettings


def flowedit_start(
    source_latents: torch.Tensor,
    source_embeds: torch.Tensor,
    target_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    settings: FlowEditSettings,
) -> FlowEditState:
    """The state before the first step: z = x_src (float32). Raises ValueError for settings that make no sense."""
    if problem := settings.problem():
        raise ValueError(problem)
    if source_latents.ndim != 5:
        raise ValueError(f"FlowEdit needs latents (B, C, F, h, w), got shape {tuple(source_latents.shape)}")
    source = source_latents.float()
    return FlowEditState(source, source.clone(), source_embeds, target_embeds, negative_embeds, settings)


@torch.no_grad()
def flowedit_step(
    transformer: torch.nn.Module, state: FlowEditState, step: FlowEditStep, noises: Sequence[torch.Tensor]
) -> FlowEditState:
    """Advance `state` by one step of the plan, with the step's noise draws (`step.draws` of them, source-shaped)."""
    if len(noises) != step.draws:
        raise ValueError(f"FlowEdit step {step.index} takes {step.draws} noise draws, got {len(noises)}")
    settings, x_src, latents = state.settings, state.source, state.latents
    sigma, dt = step.sigma, step.sigma_next - step.sigma

    def coupled(noise: torch.Tensor) -> torch.Tensor:  # the source's forward-process point at sigma
        return (1 - sigma) * x_src + sigma * noise.to(x_src)

    if step.phase == "edit":
        delta = torch.zeros_like(x_src)
        for noise in noises:
            z_src = coupled(noise)
            z_tar = z_src + (latents - x_src)  # zero offset at z = x_src, so z_tar is z_src bit for bit there
            v_src = velocity(
                transformer, z_src, step.timestep, state.source_embeds, state.negative_embeds, settings.source_guidance
            )
            v_tar = velocity(
                transformer, z_tar, step.timestep, state.target_embeds, state.negative_embeds, settings.target_guidance
            )
            delta += (v_tar - v_src) / len(noises)
        latents = latents + dt * delta
    else:
        if noises:  # the first sampling step: leave the edit ODE for the target's noisy sample at sigma
            latents = coupled(noises[0]) + (latents - x_src)
        v_tar = velocity(
            transformer, latents, step.timestep, state.target_embeds, state.negative_embeds, settings.target_guidance
        )
        latents = latents + dt * v_tar
    return FlowEditState(x_src, latents, state.source_embeds, state.target_embeds, state.negative_embeds, settings)


def flowedit(
    transformer: torch.nn.Module,
    source_latents: torch.Tensor,
    source_embeds: torch.Tensor,
    target_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    settings: FlowEditSettings,
    generator: torch.Generator | None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> torch.Tensor:
    """The edited latents (source's shape and dtype): FlowEdit of one clip, n_max transformer steps.

    `cancel()` is asked before each step (raising Cancelled), `progress(done, total)` is told after each."""
    state = flowedit_start(source_latents, source_embeds, target_embeds, negative_embeds, settings)
    plan = flowedit_plan(settings)
    for done, step in enumerate(plan):
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled during FlowEdit at step {done}/{len(plan)}")
        noises = draw_step_noise(step, state.source.shape, generator, state.source.device)
        state = flowedit_step(transformer, state, step, noises)
        if progress is not None:
            progress(done + 1, len(plan))
    return state.latents.to(source_latents.dtype)


def blend_outside(result: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The edit where `mask` is 1, the source latents where it is 0, mixed in between (a feathered matte).

    `mask` is latent-sized and broadcasts to the latents, e.g. (F, h, w) or (B, 1, F, h, w); it is exact at 0 and 1
    (the source's own values outside, the edit's own inside)."""
    if result.shape != source.shape:
        raise ValueError(f"blend_outside: edit {tuple(result.shape)} and source {tuple(source.shape)} differ in shape")
    try:
        fits = torch.broadcast_shapes(mask.shape, result.shape) == result.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"blend_outside: mask {tuple(mask.shape)} does not fit latents {tuple(result.shape)}")
    weight = mask.to(device=result.device, dtype=result.dtype)
    return result * weight + source * (1 - weight)
