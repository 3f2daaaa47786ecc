"""Direct inversion (Ju et al., ICLR 2024, "PnP Inversion"), brought to video: the source branch is the clip's own.

The two branches of an edit need different things. The source branch only has to reproduce the clip, because its
cross-attention maps are what spatial regularization injects; the edit branch only has to follow the target prompt.
Null-text inversion makes one embedding serve both by optimizing it. Direct inversion needs no optimization: the
source branch's latents are set, at every edit step, to the DDIM inversion's latents of that step (the paper adds
the difference between the inverted latent and the guided step's result, which comes to the same), and the edit
branch is left alone: guidance with the plain "" embedding from z_T.

Setting the latents (rather than adding a difference computed at inversion time) is exact whatever attention layout,
GroupNorm or anchors the edit uses. Since the source branch's own update is thrown away, it needs no unconditional
pass, only its conditional one for the maps: a UNet call is [uncond-edit, cond-src, cond-edit] x frames, 3 x frames
instead of null-text's 4 x; and once the cross-replace cutoff (and self-replacement's, self_replace.py) is passed
the source branch is no longer used, so it leaves the batch: [uncond-edit, cond-edit], 2 x frames.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from v2vz_engine.local_edit import LocalEdit, blend
from v2vz_engine.schedule import DdimSchedule
from v2vz_engine.spatial_regularization import PromptControl

NoisePredictor = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]  # (z, t, text per frame) -> eps
StepCallback = Callable[[int, int], None]


def trajectory_of(latents: list[torch.Tensor]) -> torch.Tensor:
    """DDIM inversion's latents z_0 .. z_T -> (steps + 1, F, 4, h, w) in sampling order: [i] enters edit step i."""
    return torch.stack(latents[::-1])


def sample_direct(
    predict: NoisePredictor,
    schedule: DdimSchedule,
    trajectory: torch.Tensor,
    texts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    guidance: float,
    control: PromptControl,
    anchors: torch.Tensor | None = None,
    record: tuple[int, ...] = (),
    on_step: StepCallback | None = None,
    local: LocalEdit | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise the edit branch with the source branch on the inversion trajectory.

    `texts`: the embeddings (1, 77, D) of "", the source prompt and the target prompt. `anchors`: trajectories
    (steps, 2, A, 4, h, w) of frames of earlier windows (source and edit branch), which join every UNet call ahead of
    the frames for their keys and values only. Returns both branches' z_0 (2F, ...): the source branch's is the
    clip's z_0 itself; and the (steps, 2, R, ...) latents entering each step at the `record` positions. A local
    edit replaces the edit branch's latents outside its region by the trajectory's after every step: there the
    edit's z_0 is the clip's own.
    """
    steps = schedule.steps
    if trajectory.shape[0] != steps + 1:
        raise ValueError(f"a trajectory of {trajectory.shape[0]} latents does not serve a {steps}-step edit")
    frames = trajectory.shape[1]
    extra = 0 if anchors is None else anchors.shape[2]
    batch = extra + frames
    empty, source_text, target_text = (text.expand(batch, -1, -1) for text in texts)
    with_source_text = torch.cat([empty, source_text, target_text])
    edit_only_text = torch.cat([empty, target_text])
    edit = trajectory[0]
    recorded = []
    with torch.no_grad():
        for i, t in enumerate(schedule.timesteps):
            source = trajectory[i]
            if record:
                recorded.append(torch.stack([source[list(record)], edit[list(record)]]))
            if anchors is None:
                source_in, edit_in = source, edit
            else:
                source_in, edit_in = torch.cat([anchors[i, 0], source]), torch.cat([anchors[i, 1], edit])
            if control.source_needed(i):  # its cross-attention maps or its self-attention are used
                z_in, text = torch.cat([edit_in, source_in, edit_in]), with_source_text
            else:
                z_in, text = torch.cat([edit_in, edit_in]), edit_only_text
            eps = predict(z_in, t, text)
            eps_uncond, eps_cond = eps[:batch], eps[-batch:]
            eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            edit = schedule.step(eps[extra:], t, edit)  # anchors are not stepped
            if local is not None:
                edit = blend(edit, trajectory[i + 1], local.weight(i))
            if on_step:
                on_step(i + 1, steps)
    latents = torch.cat([trajectory[-1], edit])
    return latents, torch.stack(recorded) if record else None
