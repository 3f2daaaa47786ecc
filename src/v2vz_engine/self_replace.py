"""Self-attention replacement (prompt-to-prompt, method.md section 4's optional extension): for the first part of
the edit, the edit branch's self-attention (attn1) probabilities in the coarse layers are the source branch's, so
the edit keeps the clip's layout and motion while its cross-attention still follows the target prompt.

In the dense cross-frame form the probabilities of one layer are softmax(Q_src K_src^T / sqrt(d)) over the keys of
every frame: (F*N)^2 per head, far too many to hold (65,536^2 at 512x512 and 16 frames). What the edit branch needs
of them is their product with its own values, P_src V_edit, and that is exactly attention with the source branch's
queries and keys and the edit branch's values. So the replacement swaps the queries and keys of the conditional
edit group for the conditional source group's before the ordinary memory-efficient kernel runs: no probability is
ever stored, and the memory added is one copy of a coarse layer's queries and keys. As in prompt-to-prompt, only
the conditional half is replaced, and only layers of at most 1/16 of the latent's tokens per frame (16x16 of SD's
64x64 latent and coarser): replacing the fine layers would copy the source's textures and leave nothing to edit.
The published code configures 0.4 and never applies it; `--preset published` keeps it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from v2vz_engine.spatial_regularization import PromptControl
from v2vz_engine.step_rules import CutoffRule, cross_replace_cutoff

COARSE_SHARE = 16  # layers with at most latent tokens / COARSE_SHARE tokens per frame are replaced


@dataclass(frozen=True)
class SelfReplace:
    """The rule every attn1 processor of one edit shares; the step comes from the attn2 processors' count."""

    control: PromptControl
    max_tokens: int  # tokens per frame of the finest layer replaced

    @classmethod
    def for_edit(
        cls, control: PromptControl, fraction: float, steps: int, latent: tuple[int, int], rule: CutoffRule
    ) -> SelfReplace | None:
        """The rule of `fraction` of `steps` (None when it replaces nothing); it sets the control's self cutoff so
        that direct inversion keeps the source branch in the batch that long."""
        cutoff = cross_replace_cutoff(fraction, steps, rule) if fraction > 0 else 0
        if cutoff == 0:
            return None
        control.self_cutoff_step = cutoff
        return cls(control, max(1, latent[0] * latent[1] // COARSE_SHARE))

    def swap(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k `(groups*B, N, C)` with the cond-edit group's (the last) replaced by cond-source's (the one before)
        while this step and layer are replaced; unchanged otherwise."""
        control = self.control
        step = control.step
        if step >= control.self_cutoff_step or q.shape[1] > self.max_tokens or control.groups(step) < 3:
            return q, k
        return _with_last_as_previous(q, control.groups(step)), _with_last_as_previous(k, control.groups(step))


def _with_last_as_previous(x: torch.Tensor, groups: int) -> torch.Tensor:
    grouped = x.view(groups, -1, *x.shape[1:])
    return torch.cat([grouped[:-1], grouped[-2:-1]]).view_as(x)
