"""The edit pipeline: frames + source prompt + target prompt -> edited frames (method.md sections 1-4).

Stages, each callable on its own so it can be tested and reused (a cached inversion skips the first two):
  encode (VAE) -> invert (DDIM; then null-text optimization with inversion="null-text") -> edit (both branches,
  cross-frame attention, spatial regularization; direct.py with inversion="direct") -> decode (VAE).
Each stage takes values and returns values: nothing is left on the pipeline between calls but the prompt cache.
Progress is reported as (stage, step, total); a cancel check runs between steps and raises Cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from v2vz.api.errors import Cancelled
from v2vz.api.events import ProgressFn, Stage
from v2vz.api.job import EditOptions, edit_only_words
from v2vz_engine import conditioning
from v2vz_engine.cross_frame import (
    CrossFrameAttnProcessor,
    FrameContext,
    install_frame_joint_groupnorm,
    layout_modes,
)
from v2vz_engine.direct import sample_direct, trajectory_of
from v2vz_engine.inversion import Inversion, ddim_invert, optimize_nulls
from v2vz_engine.local_edit import LocalEdit, WordMaps, blend, downsample, local_positions
from v2vz_engine.models import LoadedModel
from v2vz_engine.schedule import DdimSchedule
from v2vz_engine.self_replace import SelfReplace
from v2vz_engine.spatial_regularization import (
    BRANCHES,
    DIRECT_BRANCHES,
    PromptControl,
    SpatialRegularizationProcessor,
    cross_attention_names,
)
from v2vz_engine.step_rules import first_null_step

CancelFn = Callable[[], bool]
Timings = dict[str, float]  # seconds per stage
VAE_CHUNK = 4  # frames per VAE call: bounds the decoder's memory at large sizes


@dataclass(frozen=True)
class AnchorLink:
    """How a window links to the others (windows.py): the anchors it attends to and the positions it records.

    anchors: latent trajectories (steps, 2, A, 4, h, w) of frames of earlier windows, both branches; they join every
    UNet call ahead of the window's frames, for their keys and values only.
    trajectory_positions: positions within the window whose trajectories later windows need.
    """

    anchors: torch.Tensor | None = None
    trajectory_positions: tuple[int, ...] = ()
    anchor_indices: tuple[int, ...] = ()  # the anchors' clip positions (a local edit's neighbours in time)
    anchor_shares: torch.Tensor | None = None  # (steps, A, h, w): the anchors' word shares in their own span


ALONE = AnchorLink()  # a clip edited in one piece: no anchors, nothing recorded


@dataclass(frozen=True)
class Region:
    """What bounds a local edit besides its words (options.edit_only): the frames' clip positions and a matte."""

    indices: tuple[int, ...]  # clip positions of the frames edited, in order
    matte: np.ndarray | None = None  # float32 (F, h, w) in 0..1 at the working size; None: no matte


@dataclass
class Sampled:
    latents: torch.Tensor  # the edit branch's z_0 (F, 4, h, w); both branches (2F, ...) with keep_source
    trajectories: torch.Tensor | None = None  # (steps, 2, R, 4, h, w) of the positions the link asked to record
    shares: torch.Tensor | None = None  # (steps, R, h, w): the word shares of those positions (local_edit.py)
    region: torch.Tensor | None = None  # (F, h, w): the word region after the last step; None: no words


@dataclass
class EditResult:
    frames: np.ndarray  # uint8 (F, h, w, 3) at the working size
    inversion: Inversion
    timings: Timings = field(default_factory=dict)
    trajectories: torch.Tensor | None = None  # (steps, 2, R, 4, h, w) of the positions the link asked to record
    shares: torch.Tensor | None = None  # (steps, R, h, w) of the same positions, for a local edit's later spans
    region: torch.Tensor | None = None  # (F, h, w) at the latent size: the word region as edited; None: no words


class VideoEditPipeline:
    """Holds a loaded model and edits clips with it; one instance serves many jobs (one at a time). The vid2vid-zero
    method's editor is spans.Vid2VidZero around it (methods.py)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.context = FrameContext()
        self._attn2_names = cross_attention_names(model.unet)
        self._prompt_cache: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------------------------------------------------
    # Building blocks

    def encode_prompt(self, text: str) -> torch.Tensor:
        """A prompt's conditioning in the compute dtype, cached per prompt: (1, 77, D), or SDXL's packed (1, 78, D)
        with its pooled embedding (conditioning.py)."""
        if text not in self._prompt_cache:
            with torch.no_grad():
                self._prompt_cache[text] = conditioning.encode(self.model, text)
        return self._prompt_cache[text]

    def encode_frames(self, frames: np.ndarray, options: EditOptions) -> torch.Tensor:
        """uint8 (F, h, w, 3) -> latents z_0 (F, 4, h/8, w/8) in float32; VAE mean or a seeded sample."""
        vae = self.model.vae
        generator = torch.Generator(device=self.model.device).manual_seed(options.seed)
        pixels = torch.from_numpy(frames).to(self.model.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        latents = []
        with torch.no_grad():
            for chunk in pixels.split(VAE_CHUNK):
                dist = vae.encode(chunk).latent_dist
                latents.append(dist.mean if options.vae_encode == "mean" else dist.sample(generator))
        return torch.cat(latents).float() * self.model.latent_scale

    def decode_latents(self, z0: torch.Tensor) -> np.ndarray:
        """Latents -> uint8 (F, h, w, 3)."""
        vae = self.model.vae
        images = []
        with torch.no_grad():
            for chunk in (z0 / self.model.latent_scale).split(VAE_CHUNK):
                images.append(vae.decode(chunk.float()).sample.float())
        pixels = ((torch.cat(images).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def predict_noise(self, z: torch.Tensor, t: int, text: torch.Tensor) -> torch.Tensor:
        """One UNet call in the compute dtype; float32 out so schedule maths and losses stay in float32."""
        dtype = self.model.dtype  # not unet.dtype: diffusers walks every submodule to answer that
        timestep = torch.tensor(t, device=self.model.device)
        hidden, added = conditioning.unet_inputs(self.model, text.to(dtype), tuple(z.shape[-2:]))
        out = self.model.unet(z.to(dtype), timestep, encoder_hidden_states=hidden, added_cond_kwargs=added).sample
        return out.float()

    def _install(self, options: EditOptions, frames: int, control: PromptControl | None) -> None:
        """Set the frame context and the attention processors of one stage."""
        self.context.frames = frames
        self.context.cross_frame = control is not None  # cross-frame attention while editing only
        self.context.joint_groupnorm = options.joint_groupnorm
        self.context.self_replace = None
        install_frame_joint_groupnorm(self.model.unet, self.context)  # (re)binds the norms to this pipeline
        processors: dict[str, object] = {
            name: CrossFrameAttnProcessor(mode, self.context)
            for name, mode in layout_modes(self.model.unet, options.attention).items()
        }
        for name in self._attn2_names:
            processors[name] = SpatialRegularizationProcessor(control) if control else AttnProcessor2_0()
        self.model.unet.set_attn_processor(processors)

    @staticmethod
    def _stepper(stage: Stage, progress: ProgressFn | None, cancel: CancelFn | None) -> Callable[[int, int], None]:
        def on_step(step: int, total: int) -> None:
            if progress:
                progress(stage, step, total)
            if cancel and cancel():
                raise Cancelled(f"cancelled during {stage} at step {step}/{total}")

        return on_step

    @staticmethod
    def _inner_check(cancel: CancelFn | None, steps: int) -> Callable[[int, int], None] | None:
        """A cancel check between null-text's inner iterations (each one UNet call and its backward)."""
        if cancel is None:
            return None

        def check(step: int, inner: int) -> None:
            if cancel():
                raise Cancelled(f"cancelled during null-text at step {step}/{steps} (inner step {inner})")

        return check

    # ----------------------------------------------------------------------------------------------------------
    # Stages

    def invert(
        self,
        z0: torch.Tensor,
        source_prompt: str,
        options: EditOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> tuple[Inversion, Timings]:
        """DDIM inversion from latents z_0, then what options.inversion needs of it; and the stages' timings.

        null-text optimizes the nulls (its own stage); direct keeps the whole trajectory; negative-prompt only z_T.
        """
        frames = z0.shape[0]
        schedule = DdimSchedule.from_scheduler(self.model.scheduler, options.steps)
        self._install(options, frames, control=None)
        source = self.encode_prompt(source_prompt)
        empty = self.encode_prompt("")
        inversion_text = source if options.inversion_prompt == "source" else empty
        mark = time.perf_counter()
        latents = ddim_invert(
            self.predict_noise,
            schedule,
            z0.float(),
            inversion_text.expand(frames, -1, -1),
            self._stepper(Stage.INVERSION, progress, cancel),
        )
        timings = {"inversion": time.perf_counter() - mark}
        meta = {
            "source_prompt": source_prompt,
            "model": self.model.name,
            "frames": frames,
            **options.inversion_key(),
        }
        if options.inversion == "direct":
            return Inversion(latents[-1], meta=meta, trajectory=trajectory_of(latents)), timings
        if options.inversion == "negative-prompt":  # the source prompt serves as the unconditional embedding
            return Inversion(latents[-1], meta=meta), timings
        mark = time.perf_counter()
        settings = {
            "guidance": options.guidance,
            "inner_steps": options.null_inner_steps,
            "lr": options.null_lr,
            "early_stop": options.null_early_stop,
            "lr_decay": options.null_lr_decay,
            "on_step": self._stepper(Stage.NULL_TEXT, progress, cancel),
            "before_inner": self._inner_check(cancel, schedule.steps),
        }
        cond = source.expand(frames, -1, -1)
        nulls, losses = optimize_nulls(self.predict_noise, schedule, latents, cond, empty, **settings)
        timings["null-text"] = time.perf_counter() - mark
        return Inversion(latents[-1], nulls, meta, losses), timings

    def sample(
        self,
        inversion: Inversion,
        source_prompt: str,
        target_prompt: str,
        options: EditOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        keep_source: bool = False,
        link: AnchorLink = ALONE,
        region: Region | None = None,
    ) -> Sampled:
        """Denoise the source and edit branches together from z_T; returns the edit branch's z_0.

        With keep_source the latents are both branches (2F, ...) - the source branch is the reconstruction.
        With a link, its anchors join every UNet call and the trajectories of its `trajectory_positions` are returned.
        A local edit (options.edit_only, a region's matte) blends the edit branch towards the source outside its
        region after every step (local_edit.py); options.self_replace gives it the source's self-attention.
        An inversion with a trajectory (direct) puts the source branch on it (direct.py); otherwise both branches
        are denoised with the inversion's nulls (null-text) or the source prompt (negative-prompt) as unconditional.
        """
        schedule = DdimSchedule.from_scheduler(self.model.scheduler, options.steps)
        if inversion.steps not in (None, schedule.steps):
            raise ValueError(f"the inversion serves {inversion.steps} steps, not a {schedule.steps}-step edit")
        direct = inversion.trajectory is not None
        frames = inversion.z_T.shape[0]
        anchors, record = link.anchors, tuple(link.trajectory_positions)
        if anchors is not None and anchors.shape[:2] != (schedule.steps, 2):
            raise ValueError(f"anchor trajectories {tuple(anchors.shape)} do not match a {schedule.steps}-step edit")
        if anchors is not None:
            anchors = anchors.to(self.model.device, torch.float32)
        batch = frames + (0 if anchors is None else anchors.shape[2])  # frames per branch in every UNet call
        control = PromptControl.for_prompts(
            source_prompt,
            target_prompt,
            self.model.tokenizer,
            batch,
            schedule.steps,
            len(self._attn2_names),
            options.cross_replace,
            options.refine_cross_replace,
            cutoff=options.cross_replace_cutoff,
            refine_padding=options.refine_padding,
            branches=DIRECT_BRANCHES if direct else BRANCHES,
        )
        self._install(options, batch, control)
        latent = tuple(inversion.z_T.shape[-2:])
        self.context.self_replace = SelfReplace.for_edit(
            control, options.self_replace, schedule.steps, latent, options.cross_replace_cutoff
        )
        local = self._local_edit(options, source_prompt, target_prompt, schedule.steps, latent, batch, link, region)
        control.maps = local.maps if local else None
        texts = (self.encode_prompt(""), self.encode_prompt(source_prompt), self.encode_prompt(target_prompt))
        on_step = self._stepper(Stage.EDIT, progress, cancel)
        if direct:
            trajectory = inversion.trajectory.to(self.model.device, torch.float32)
            z, recorded = sample_direct(
                self.predict_noise,
                schedule,
                trajectory,
                texts,
                options.guidance,
                control,
                anchors,
                record,
                on_step,
                local,
            )
        else:
            if inversion.nulls is None:  # negative-prompt: the source prompt's embedding at every step
                nulls = texts[1].float().expand(schedule.steps, -1, -1)
            else:
                nulls = inversion.nulls.to(self.model.device)
            z_T = inversion.z_T.to(self.model.device, torch.float32)
            first = first_null_step(options.null_start, schedule.steps)
            z, recorded = self._sample_paired(
                schedule, z_T, nulls, first, texts, options.guidance, anchors, record, on_step, local
            )
        if control.calls != schedule.steps * control.layers:
            raise RuntimeError(f"expected one UNet call per step, counted {control.calls / control.layers:.2f}")
        shares, final = (local.recorded_shares(), local.final_region) if local else (None, None)
        return Sampled(z if keep_source else z[frames:], recorded, shares, final)

    def _local_edit(
        self,
        options: EditOptions,
        source_prompt: str,
        target_prompt: str,
        steps: int,
        latent: tuple[int, int],
        batch: int,
        link: AnchorLink,
        region: Region | None,
    ) -> LocalEdit | None:
        """The span's local edit, or None when it edits the whole frame (no words, no matte)."""
        words = edit_only_words(options.edit_only)
        matte = None if region is None or region.matte is None else region.matte
        if not words and matte is None:
            return None
        frames = batch - len(link.anchor_indices)
        indices = region.indices if region is not None else tuple(range(frames))
        maps = None
        if words:
            tokenizer = self.model.tokenizer
            maps = WordMaps(
                local_positions(source_prompt, words, tokenizer),
                local_positions(target_prompt, words, tokenizer),
                latent,
                batch,
            )
        return LocalEdit(
            steps,
            indices,
            maps,
            None if matte is None else downsample(matte, latent[1], latent[0]).to(self.model.device),
            options.edit_only_threshold,
            link.anchor_indices,
            link.anchor_shares,
            tuple(link.trajectory_positions) if words else (),
        )

    def _sample_paired(
        self,
        schedule: DdimSchedule,
        z_T: torch.Tensor,
        nulls: torch.Tensor,
        first_null: int,
        texts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        guidance: float,
        anchors: torch.Tensor | None,
        record: tuple[int, ...],
        on_step: Callable[[int, int], None],
        local: LocalEdit | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both branches from z_T, batch [uncond-src, uncond-edit, cond-src, cond-edit]; nulls[i] from step first_null.

        Returns both branches' z_0 (2F, ...) and the recorded latents (steps, 2, R, ...) or None. A local edit
        blends the edit branch towards the source branch's own latents after every step.
        """
        frames = z_T.shape[0]
        extra = 0 if anchors is None else anchors.shape[2]
        batch = extra + frames
        empty, source, target = texts
        cond = torch.cat([source.expand(batch, -1, -1), target.expand(batch, -1, -1)])
        recorded = []
        z = torch.cat([z_T, z_T])
        with torch.no_grad():
            for i, t in enumerate(schedule.timesteps):
                branches = z.view(2, frames, *z.shape[1:])
                if record:
                    recorded.append(branches[:, list(record)].clone())
                # [anchors, frames] per branch; the anchors' latents are their recorded ones at this step
                z_in = z if anchors is None else torch.cat([anchors[i], branches], dim=1).flatten(0, 1)
                null = nulls[i : i + 1] if i >= first_null else empty
                uncond = null.to(cond.dtype).expand(2 * batch, -1, -1)
                text = torch.cat([uncond, cond])
                eps_uncond, eps_cond = self.predict_noise(torch.cat([z_in, z_in]), t, text).chunk(2)
                eps = eps_uncond + guidance * (eps_cond - eps_uncond)
                if anchors is not None:
                    eps = eps.view(2, batch, *eps.shape[1:])[:, extra:].flatten(0, 1)  # anchors are not stepped
                z = schedule.step(eps, t, z)
                if local is not None:
                    z = torch.cat([z[:frames], blend(z[frames:], z[:frames], local.weight(i))])
                on_step(i + 1, schedule.steps)
        return z, torch.stack(recorded) if record else None

    def edit(
        self,
        frames: np.ndarray,
        source_prompt: str,
        target_prompt: str,
        options: EditOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        inversion: Inversion | None = None,
        link: AnchorLink = ALONE,
        region: Region | None = None,
    ) -> EditResult:
        """The whole method on uint8 frames at the working size; pass a cached inversion to skip its stages.

        `link` is for windowed edits (see `sample`); the recorded trajectories are in the result.
        """
        timings: Timings = {}
        if inversion is None:
            mark = time.perf_counter()
            z0 = self.encode_frames(frames, options)
            timings["encode"] = time.perf_counter() - mark
            inversion, inverted = self.invert(z0, source_prompt, options, progress=progress, cancel=cancel)
            timings.update(inverted)
        mark = time.perf_counter()
        sampled = self.sample(
            inversion, source_prompt, target_prompt, options, progress=progress, cancel=cancel, link=link, region=region
        )
        timings["edit"] = time.perf_counter() - mark
        mark = time.perf_counter()
        edited = self.decode_latents(sampled.latents)
        timings["decode"] = time.perf_counter() - mark
        return EditResult(edited, inversion, timings, sampled.trajectories, sampled.shares, sampled.region)
